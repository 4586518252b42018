// Clients of a sharded video room for the cluster test and the failover benchmark: official
// Phoenix clients (tests/e2e's phoenix and ws) that name their room in the socket URL, rejoin
// the relay after every (re)join, and keep the room as their relay events show it.
import { WAIT_MS, disconnect, makeSocket, parseRelay, sendRelay, stopServer, waitUntil } from "../e2e/helpers.mjs";
import { stopHaproxy } from "./haproxy.mjs";

/** One client: a socket naming its room, its channel on that room, and what it has seen. */
export class Member {
  constructor(name, room, port) {
    this.name = name;
    this.room = room;
    this.id = null; // the relay peer id of its latest join
    this.mates = new Set(); // the peers its relay events say are in the room with it
    this.accepts = 0; // peerAccepted events
    this.opens = 0;
    this.closeCodes = [];
    this.joinOks = 0;
    this.errorReplies = [];
    this.socket = makeSocket(port, { params: { room } });
    this.socket.onOpen(() => this.opens++);
    this.socket.onClose((event) => this.closeCodes.push(event.code));
    this.channel = this.socket.channel(`room:${room}`, {});
    this.channel.on("mediaEvent", (payload) => this.see(parseRelay(payload)));
  }

  see(event) {
    if (event.type === "peerAccepted") {
      this.id = event.data.id;
      this.mates = new Set(event.data.peersInRoom.map((peer) => peer.id));
      this.accepts++;
    } else if (event.type === "peerJoined") {
      this.mates.add(event.data.peer.id);
    } else if (event.type === "peerLeft") {
      this.mates.delete(event.data.peerId);
    }
  }

  /** Connects and joins; every (re)join is followed by the relay join, as the demo page does. */
  start() {
    this.socket.connect();
    this.channel
      .join(WAIT_MS)
      .receive("ok", () => {
        this.joinOks++;
        sendRelay(this.channel, { type: "join", data: { metadata: { name: this.name } } });
      })
      .receive("error", (response) => this.errorReplies.push(response));
  }

  get reconnected() {
    return this.opens > 1 || this.closeCodes.length > 0 || this.joinOks > 1;
  }
}

/** The index of the server whose log shows `peerId` joining, or -1. */
export function serverOf(servers, peerId) {
  return peerId ? servers.findIndex((server) => server.stderr.includes(`peer ${peerId},`)) : -1;
}

/** A room is whole when every member's view holds exactly the others' current ids, all on one server. */
export function roomIsWhole(servers, members) {
  const where = new Set(members.map((member) => serverOf(servers, member.id)));
  return (
    where.size === 1 &&
    !where.has(-1) &&
    members.every((member) => {
      const others = members.filter((other) => other !== member).map((other) => other.id);
      return member.mates.size === others.length && others.every((id) => member.mates.has(id));
    })
  );
}

export function describeRooms(servers, rooms) {
  return [...rooms]
    .map(([room, members]) => `${room}: ` + members.map((m) => `${m.name}@${serverOf(servers, m.id)}(${m.mates.size})`).join(" "))
    .join("\n");
}

/** `peersPerRoom` members in each of `roomCount` rooms (`${prefix}-0`...), started: a Map room → members. */
export function startRooms(roomCount, peersPerRoom, port, prefix = "room") {
  const rooms = new Map();
  for (let r = 0; r < roomCount; r++) {
    const room = `${prefix}-${r}`;
    rooms.set(room, []);
    for (let p = 0; p < peersPerRoom; p++) rooms.get(room).push(new Member(`${room}/${p}`, room, port));
  }
  for (const members of rooms.values()) members.forEach((member) => member.start());
  return rooms;
}

/** Waits until every room is whole and `also()` holds; on failure says where everyone is. */
export async function waitRoomsWhole(servers, rooms, ms, what, proxy, also = () => true) {
  const allWhole = () => [...rooms.values()].every((members) => roomIsWhole(servers, members));
  await waitUntil(() => allWhole() && also(), ms, what).catch((error) => {
    throw new Error(`${error.message}\n${describeRooms(servers, rooms)}\n${proxy ? proxy.output : ""}`);
  });
}

/**
 * Disconnects every member, stops HAProxy and every server still running. `checked`: a server
 * that does not exit 0 without a sanitizer report fails the test (at the end of a test; in its
 * `finally`, after a failure, everything is stopped regardless).
 */
export async function stopCluster(servers, rooms, proxy, checked = false) {
  await Promise.all([...rooms.values()].flat().map((member) => disconnect(member.socket)));
  await stopHaproxy(proxy);
  for (const server of servers) {
    if (!server.exit) await stopServer(server).catch((error) => { if (checked) throw error; });
  }
  for (const server of servers) await server.exited;
}
