// Everything that touches the DOM. app.js decides what to show; this module knows how.
// The page runs under a CSP without 'unsafe-inline', so no inline styles are written: state is
// expressed with classes, data attributes and the `hidden` attribute, styled in style.css.

const $ = (id) => document.getElementById(id);

const el = {
  joinView: $('join-view'),
  joinForm: $('join-form'),
  roomInput: $('room-input'),
  nameInput: $('name-input'),
  joinError: $('join-error'),
  joinButton: $('join-button'),
  callView: $('call-view'),
  roomName: $('room-name'),
  participantCount: $('participant-count'),
  shareLink: $('share-link'),
  copyLink: $('copy-link'),
  connectionBanner: $('connection-banner'),
  notice: $('notice'),
  noticeText: $('notice-text'),
  noticeClose: $('notice-close'),
  soundBanner: $('sound-banner'),
  enableSound: $('enable-sound'),
  tiles: $('tiles'),
  toggleMic: $('toggle-mic'),
  micLabel: $('mic-label'),
  toggleCamera: $('toggle-camera'),
  cameraLabel: $('camera-label'),
  rename: $('rename'),
  leave: $('leave'),
  renameDialog: $('rename-dialog'),
  renameForm: $('rename-form'),
  renameInput: $('rename-input'),
  renameCancel: $('rename-cancel'),
  tileTemplate: $('tile-template'),
};

const tiles = new Map(); // peer id (or "self") -> tile element

// handlers: {join({room, name}), toggleMic(), toggleCamera(), rename(name), leave()}
export function bind(handlers) {
  el.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const room = el.roomInput.value.trim();
    const name = el.nameInput.value.trim();
    if (!room) return showJoinError('Enter a room name.', el.roomInput);
    if (new TextEncoder().encode(room).length > 64) return showJoinError('The room name is too long.', el.roomInput);
    if (!name) return showJoinError('Enter your name.', el.nameInput);
    handlers.join({ room, name });
  });
  el.toggleMic.addEventListener('click', () => handlers.toggleMic());
  el.toggleCamera.addEventListener('click', () => handlers.toggleCamera());
  el.leave.addEventListener('click', () => handlers.leave());
  el.copyLink.addEventListener('click', copyShareLink);
  el.noticeClose.addEventListener('click', () => { el.notice.hidden = true; });
  el.enableSound.addEventListener('click', enableSound);

  el.rename.addEventListener('click', () => {
    el.renameInput.value = handlers.currentName();
    el.renameDialog.showModal();
    el.renameInput.select();
  });
  el.renameCancel.addEventListener('click', () => el.renameDialog.close());
  el.renameForm.addEventListener('submit', (event) => {
    const name = el.renameInput.value.trim();
    if (!name) {
      event.preventDefault();
      return;
    }
    handlers.rename(name);
  });
}

function showJoinError(text, focus) {
  el.joinError.textContent = text;
  el.joinError.hidden = !text;
  if (focus) focus.focus();
}

// The join form, prefilled; `error` is shown in red under the fields.
export function showJoin({ room = '', name = '', error = '' } = {}) {
  el.callView.hidden = true;
  el.joinView.hidden = false;
  el.roomInput.value = room;
  el.nameInput.value = name;
  el.joinButton.disabled = false;
  el.joinButton.textContent = 'Join room';
  showJoinError(error);
  (room ? el.nameInput : el.roomInput).focus();
  if (room && name) el.joinButton.focus();
}

export function showJoining() {
  el.joinButton.disabled = true;
  el.joinButton.textContent = 'Joining…';
  showJoinError('');
}

export function showCall({ room, shareUrl }) {
  el.joinView.hidden = true;
  el.callView.hidden = false;
  el.roomName.textContent = room;
  el.shareLink.value = shareUrl;
  el.notice.hidden = true;
  el.soundBanner.hidden = true;
  document.title = `${room} · Video room`;
}

async function copyShareLink() {
  const text = el.shareLink.value;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    // No clipboard API (insecure context, or permission refused): the old way.
    el.shareLink.select();
    document.execCommand('copy');
  }
  el.copyLink.textContent = 'Copied!';
  setTimeout(() => { el.copyLink.textContent = 'Copy link'; }, 1500);
}

// Connection state of the signaling socket; null hides the banner.
export function setConnection(text) {
  el.connectionBanner.textContent = text || '';
  el.connectionBanner.hidden = !text;
}

// An error the person should see (camera refused, relay error). Stays until dismissed.
export function notice(text) {
  el.noticeText.textContent = text;
  el.notice.hidden = false;
}

export function setControls({ muted, cameraOff, hasAudio, hasVideo }) {
  el.toggleMic.disabled = !hasAudio;
  el.toggleMic.setAttribute('aria-pressed', String(muted));
  el.toggleMic.classList.toggle('off', muted);
  el.micLabel.textContent = !hasAudio ? 'No mic' : muted ? 'Unmute' : 'Mute';
  el.toggleMic.title = muted ? 'Unmute microphone' : 'Mute microphone';
  el.toggleCamera.disabled = !hasVideo;
  el.toggleCamera.setAttribute('aria-pressed', String(cameraOff));
  el.toggleCamera.classList.toggle('off', cameraOff);
  el.cameraLabel.textContent = !hasVideo ? 'No camera' : cameraOff ? 'Camera on' : 'Camera off';
  el.toggleCamera.title = cameraOff ? 'Turn camera on' : 'Turn camera off';
}

function updateCount() {
  const n = tiles.size;
  el.tiles.dataset.count = String(n);
  el.tiles.classList.toggle('many', n > 9); // style.css has layouts up to 9, then 4 columns
  el.participantCount.textContent = n ? `${n} ${n === 1 ? 'participant' : 'participants'}` : '';
}

function initial(name) {
  const first = [...(name || '?').trim()][0] || '?';
  return first.toUpperCase();
}

// Creates or updates a tile. key is a peer id, or "self" for our own.
export function upsertTile(key, { name, muted, cameraOff, self = false }) {
  let tile = tiles.get(key);
  if (!tile) {
    tile = el.tileTemplate.content.firstElementChild.cloneNode(true);
    tile.dataset.peerId = key;
    tile.classList.toggle('self', self);
    tile.classList.add(self ? 'local' : 'remote', 'no-video');
    const video = tile.querySelector('video');
    video.muted = self; // never play our own microphone back
    tile.querySelector('.tile-status').hidden = true;
    video.addEventListener('resize', () => refreshVideoState(tile));
    video.addEventListener('playing', () => refreshVideoState(tile));
    tiles.set(key, tile);
    // Our own tile stays first.
    if (self) el.tiles.prepend(tile);
    else el.tiles.append(tile);
    updateCount();
  }
  const shown = name || 'Guest';
  tile.querySelector('.name').textContent = self ? `${shown} (you)` : shown;
  tile.querySelector('.avatar').textContent = initial(shown);
  tile.classList.toggle('muted', Boolean(muted));
  tile.classList.toggle('camera-off', Boolean(cameraOff));
  return tile;
}

function refreshVideoState(tile) {
  const video = tile.querySelector('video');
  tile.classList.toggle('no-video', !(video.videoWidth > 0));
}

export function setTileStream(key, stream) {
  const tile = tiles.get(key);
  if (!tile || !stream) return;
  const video = tile.querySelector('video');
  if (video.srcObject !== stream) video.srcObject = stream;
  play(video);
}

function play(video) {
  video.play().catch((err) => {
    if (err.name !== 'NotAllowedError') return; // e.g. interrupted by a new srcObject
    // Autoplay with sound refused (no user gesture yet, e.g. opened from a link): play muted
    // and offer a button; the video still shows.
    video.muted = true;
    video.play().catch(() => {});
    if (!video.closest('.self')) {
      video.dataset.soundBlocked = 'true';
      el.soundBanner.hidden = false;
    }
  });
}

function enableSound() {
  for (const video of el.tiles.querySelectorAll('video[data-sound-blocked]')) {
    delete video.dataset.soundBlocked;
    video.muted = false;
    video.play().catch(() => {});
  }
  el.soundBanner.hidden = true;
}

// connectionState of the peer connection: a small label while not connected.
export function setTileStatus(key, state) {
  const tile = tiles.get(key);
  if (!tile) return;
  const labels = { new: 'Connecting…', connecting: 'Connecting…', disconnected: 'Connection lost…', failed: 'Reconnecting…' };
  const text = labels[state] || '';
  const status = tile.querySelector('.tile-status');
  status.textContent = text;
  status.hidden = !text;
}

export function removeTile(key) {
  const tile = tiles.get(key);
  if (!tile) return;
  const video = tile.querySelector('video');
  video.srcObject = null;
  tile.remove();
  tiles.delete(key);
  updateCount();
}

export function removeRemoteTiles() {
  for (const key of [...tiles.keys()]) if (key !== 'self') removeTile(key);
}

export function removeAllTiles() {
  for (const key of [...tiles.keys()]) removeTile(key);
}

export function tileVideo(key) {
  const tile = tiles.get(key);
  return tile ? tile.querySelector('video') : null;
}
