// The voicepipe page: microphone -> WebSocket -> the server's pipeline -> speakers.
//
// Wire protocol (docs/server.md): we send the microphone as binary frames and
// {"type": "stop"} when the user presses Stop; the server sends one JSON event
// per text frame and the reply's audio as binary frames, then closes after `finish`.
// Audio is Opus both ways when the browser can (`?input=webm&output=opus`):
// MediaRecorder's WebM stream up, each reply a WebM/Opus stream of its own played
// through MediaSource. Otherwise (or with /?audio=pcm16) it is PCM16 both ways:
// an AudioWorklet sends the rate the `session` event announces, and the reply's
// PCM is scheduled as AudioBuffers.
// When the server needs an access token, open the page as /#token=... (a fragment
// never leaves the browser); it is sent in the Sec-WebSocket-Protocol header.
"use strict";

const $ = (id) => document.getElementById(id);
const OPUS_IN = "audio/webm;codecs=opus"; // what MediaRecorder records
const OPUS_OUT = 'audio/webm; codecs="opus"'; // what MediaSource plays
const EBML = [0x1a, 0x45, 0xdf, 0xa3]; // every WebM stream, so every Opus reply, starts so

function opusWorks() {
  if (new URLSearchParams(location.search).get("audio") === "pcm16") return false;
  return Boolean(
    window.MediaRecorder && MediaRecorder.isTypeSupported(OPUS_IN) &&
      window.MediaSource && MediaSource.isTypeSupported(OPUS_OUT),
  );
}

// Everything about the current session; `window.voicepipe` lets tests look in.
const state = {
  ws: null,
  opus: false, // Opus both ways, else PCM16 both ways
  ctx: null, // PCM: the AudioContext of capture
  out: null, // PCM: the AudioContext of playback (suspended while `paused`)
  stream: null, // the microphone
  capture: null, // the AudioWorkletNode or the MediaRecorder
  audio: null, // Opus: the <audio> element
  replies: [], // Opus: reply streams, the first one attached to `audio`
  held: false, // Opus: playback paused by a `paused` event
  repliesPlayed: 0, // Opus: reply streams played to their end
  outFormat: { sample_rate: 24000, channels: 1 },
  playHead: 0, // AudioContext time at which the next reply chunk starts
  playing: new Set(), // AudioBufferSourceNodes scheduled or sounding
  cutOff: 0, // how many of them (or Opus replies) an interruption stopped
  cutAt: null, // Opus: where in its reply the last interruption stopped playback (s)
  sentBytes: 0,
  receivedBytes: 0,
  started: 0, // performance.now() at `session` and when the microphone stopped:
  ended: 0, // the conversation's length, for its bandwidth per minute
  events: [], // types of the events received, in order
  userLine: null,
  assistantLine: null,
  finished: false,
  finishReason: null, // the `finish` event's reason ("shutdown": the server drained)
  sessionId: null, // from the `session` event: a form session resumes by it
  path: null, // what the mode selector chose when this conversation started
  retries: 0, // reconnections in a row to a restarting server
  reconnecting: null, // the timer of the next one
};
window.voicepipe = state;

function setStatus(text) {
  $("status").textContent = text;
}

function showError(text) {
  const div = document.createElement("div");
  div.textContent = text;
  $("errors").append(div);
}

function updateStats() {
  const kb = (n) => (n / 1000).toFixed(1);
  const codec = state.opus ? "Opus" : "PCM16";
  $("stats").textContent = `${codec} audio sent: ${kb(state.sentBytes)} KB · received: ${kb(state.receivedBytes)} KB`;
}

// -- starting and stopping ---------------------------------------------------

async function loadModes() {
  try {
    const health = await (await fetch("/health")).json();
    for (const name of health.forms || []) {
      const option = document.createElement("option");
      option.value = `forms/${encodeURIComponent(name)}`;
      option.textContent = `Form: ${name}`;
      $("mode").append(option);
    }
  } catch (err) {
    showError(`cannot reach the server: ${err}`);
  }
}

async function start(resume = false) {
  $("start").disabled = true;
  $("mode").disabled = true;
  if (!resume) {
    clearTimeout(state.reconnecting);
    $("conversation").replaceChildren();
    $("errors").replaceChildren();
    Object.assign(state, { sessionId: null, retries: 0, path: $("mode").value });
  }
  Object.assign(state, { sentBytes: 0, receivedBytes: 0, cutOff: 0, cutAt: null, events: [], finished: false });
  state.finishReason = null;
  Object.assign(state, { started: 0, ended: 0, replies: [], held: false, repliesPlayed: 0 });
  state.userLine = state.assistantLine = null;
  state.opus = opusWorks();
  try {
    // Created on the click, so the browser lets them play sound.
    if (state.opus) {
      state.audio = new Audio();
      state.audio.addEventListener("ended", nextReply);
    } else {
      state.ctx = new AudioContext();
      state.out = new AudioContext();
      await state.ctx.audioWorklet.addModule("/static/worklet.js");
    }
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    showError(`microphone: ${err.message || err}`);
    teardown();
    return;
  }
  connect(state.path);
}

// A server that restarts (a deploy drains its workers) refuses new sessions with 1012
// and ends those in progress with `finish` "shutdown" and 1001: come back after a short,
// growing, jittered wait (docs/server.md), to the same conversation or form session.
const RECONNECT_TRIES = 5;

function reconnectsAfter(event) {
  return event.code === 1012 || (event.code === 1001 && state.finishReason === "shutdown");
}

function reconnect() {
  state.retries += 1;
  const delay = 250 * 2 ** (state.retries - 1) * (1 + Math.random() / 2);
  setStatus(`server restarting: reconnecting in ${(delay / 1000).toFixed(1)} s…`);
  state.reconnecting = setTimeout(() => {
    state.reconnecting = null;
    start(true);
  }, delay);
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function connect(path) {
  const page = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams();
  const session = state.sessionId || fragment.get("session") || page.get("session");
  if (session) query.set("session", session);
  if (state.opus) {
    query.set("input", "webm");
    query.set("output", "opus");
  }
  const protocols = ["voicepipe"];
  const token = fragment.get("token") || page.get("token");
  if (token) protocols.push("voicepipe.token." + base64url(token));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/${path}?${query}`, protocols);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  setStatus("connecting…");
  ws.onmessage = (message) => {
    if (typeof message.data === "string") onEvent(JSON.parse(message.data));
    else play(message.data);
  };
  ws.onclose = (event) => {
    if (state.ws !== ws) return; // a connection the user already left
    const again = reconnectsAfter(event) && state.retries < RECONNECT_TRIES;
    if (event.code !== 1000 && event.code !== 1005 && !again) {
      showError(`connection closed (${event.code})${event.reason ? ": " + event.reason : ""}`);
    }
    if (!state.finished) setStatus(`closed (${event.code})`);
    teardown();
    if (again) reconnect();
  };
  $("stop").disabled = false;
}

function send(data) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(data);
    state.sentBytes += data.byteLength ?? data.size;
    updateStats();
  }
}

function startCapture(rate) {
  if (state.opus) {
    // One WebM stream, cut every 100 ms; the server decodes it as one stream. 32 kbps
    // is plenty for speech (the default is 128).
    const recorder = new MediaRecorder(state.stream, { mimeType: OPUS_IN, audioBitsPerSecond: 32000 });
    recorder.ondataavailable = (event) => {
      if (event.data.size > 0) send(event.data);
    };
    recorder.start(100);
    state.capture = recorder;
    return;
  }
  const source = state.ctx.createMediaStreamSource(state.stream);
  const node = new AudioWorkletNode(state.ctx, "pcm-capture", {
    processorOptions: { targetRate: rate, chunkMs: 20 },
  });
  node.port.onmessage = (message) => send(message.data);
  source.connect(node);
  node.connect(state.ctx.destination); // the node outputs silence; this keeps it running
  state.capture = node;
}

function stopCapture() {
  if (state.capture && !state.opus) {
    state.capture.port.onmessage = null;
    state.capture.disconnect();
  } else if (state.capture && state.capture.state !== "inactive") {
    state.capture.ondataavailable = null;
    state.capture.stop();
  }
  if (state.capture) state.ended = performance.now();
  state.capture = null;
  if (state.stream) {
    for (const track of state.stream.getTracks()) track.stop();
    state.stream = null;
  }
}

function stop() {
  // No more audio: the server answers what was said, then finishes and closes.
  const sendStop = () => {
    stopCapture();
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "stop" }));
  };
  const recorder = state.capture;
  if (state.opus && recorder && recorder.state !== "inactive") {
    recorder.onstop = sendStop; // after its last piece of the stream
    recorder.stop();
  } else sendStop();
  $("stop").disabled = true;
  setStatus("finishing…");
}

function teardown() {
  stopCapture();
  state.ws = null;
  $("start").disabled = false;
  $("mode").disabled = false;
  $("stop").disabled = true;
}

// -- playback -----------------------------------------------------------------

function play(data) {
  state.receivedBytes += data.byteLength;
  updateStats();
  if (state.opus) playOpus(data);
  else playPcm(data);
}

function playPcm(data) {
  const ctx = state.out;
  if (!ctx) return;
  const { sample_rate: rate, channels } = state.outFormat;
  const pcm = new Int16Array(data);
  const frames = pcm.length / channels;
  const buffer = ctx.createBuffer(channels, frames, rate);
  for (let c = 0; c < channels; c++) {
    const out = buffer.getChannelData(c);
    for (let i = 0; i < frames; i++) out[i] = pcm[i * channels + c] / 32768;
  }
  const node = ctx.createBufferSource();
  node.buffer = buffer;
  node.connect(ctx.destination);
  // Back to back with the previous chunk; after a gap, start just ahead of now.
  state.playHead = Math.max(state.playHead, ctx.currentTime + 0.03);
  node.start(state.playHead);
  state.playHead += buffer.duration;
  state.playing.add(node);
  node.onended = () => state.playing.delete(node);
}

function stopPlayback() {
  for (const node of state.playing) {
    try {
      node.stop();
      state.cutOff += 1;
    } catch (err) {
      // already stopped
    }
  }
  state.playing.clear();
  state.playHead = 0;
  if (state.replies.length) {
    // Opus: pause at once and drop everything buffered; the next reply is a new stream.
    state.cutOff += 1;
    state.cutAt = state.audio.currentTime;
    dropReplies();
  }
}

function pausePlayback(paused) {
  // `paused` keeps what is buffered; `resumed` plays on from there.
  state.held = paused;
  if (state.out) {
    if (paused) state.out.suspend();
    else state.out.resume();
  }
  if (state.audio && state.replies.length) {
    if (paused) state.audio.pause();
    else state.audio.play().catch(() => {});
  }
}

// -- Opus playback: each reply is a WebM stream of its own (a new header each) --

function playOpus(data) {
  const bytes = new Uint8Array(data, 0, Math.min(4, data.byteLength));
  if (EBML.every((b, i) => bytes[i] === b)) {
    endReply();
    state.replies.push({ media: new MediaSource(), buffer: null, pending: [], done: false });
    if (state.replies.length === 1) attach(state.replies[0]);
  }
  const reply = state.replies[state.replies.length - 1];
  if (!reply || reply.done) return; // the rest of a dropped reply: undecodable without its header
  reply.pending.push(data);
  feed(reply);
}

function attach(reply) {
  reply.media.addEventListener("sourceopen", () => {
    reply.buffer = reply.media.addSourceBuffer(OPUS_OUT);
    reply.buffer.addEventListener("updateend", () => feed(reply));
    feed(reply);
  }, { once: true });
  URL.revokeObjectURL(state.audio.src);
  state.audio.src = URL.createObjectURL(reply.media);
  if (!state.held) state.audio.play().catch(() => {});
}

function feed(reply) {
  // One append at a time; once the reply is whole and appended, end its stream.
  const buffer = reply.buffer;
  if (!buffer || buffer.updating || reply.media.readyState !== "open") return;
  if (reply.pending.length) buffer.appendBuffer(reply.pending.shift());
  else if (reply.done) reply.media.endOfStream();
}

function endReply() {
  const reply = state.replies[state.replies.length - 1];
  if (reply && !reply.done) {
    reply.done = true;
    feed(reply);
  }
}

function nextReply() {
  // The reply playing has ended: the next one, if any came meanwhile.
  state.replies.shift();
  state.repliesPlayed += 1;
  if (state.replies.length) attach(state.replies[0]);
}

function dropReplies() {
  // Detaching a MediaSource drops all it buffered; the next reply gets a new one.
  state.audio.pause();
  state.replies = [];
  URL.revokeObjectURL(state.audio.src);
  state.audio.removeAttribute("src");
  state.audio.load();
}

// -- events -------------------------------------------------------------------

function line(kind, who) {
  const div = document.createElement("div");
  div.className = `line ${kind}`;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  div.append(label);
  $("conversation").append(div);
  return div;
}

function userLine() {
  if (!state.userLine) {
    const div = line("user", "You:");
    for (const part of ["final", "interim"]) {
      const span = document.createElement("span");
      span.className = part;
      div.append(span);
    }
    state.userLine = div;
  }
  return state.userLine;
}

function assistantLine() {
  if (!state.assistantLine) {
    state.assistantLine = line("assistant", "Assistant:");
    state.assistantLine.append(document.createElement("span"));
  }
  return state.assistantLine.lastChild;
}

function onEvent(event) {
  state.events.push(event.type);
  switch (event.type) {
    case "session":
      state.retries = 0;
      if (event.session_id && state.path && state.path.startsWith("forms/")) state.sessionId = event.session_id;
      if (event.output_format) state.outFormat = event.output_format;
      state.started = performance.now();
      startCapture(event.input_format.sample_rate);
      setStatus("listening");
      break;
    case "speech_started":
      setStatus("hearing you");
      break;
    case "transcript_interim":
      userLine().querySelector(".interim").textContent = event.content;
      break;
    case "transcript_final": {
      const user = userLine();
      user.querySelector(".final").textContent += `${event.content} `;
      user.querySelector(".interim").textContent = "";
      break;
    }
    case "user_turn": {
      const user = userLine();
      user.querySelector(".final").textContent = event.content;
      user.querySelector(".interim").textContent = "";
      state.userLine = null;
      setStatus("thinking");
      break;
    }
    case "assistant_delta":
      assistantLine().textContent += event.content;
      setStatus("speaking");
      break;
    case "assistant":
      if (state.opus) endReply(); // its stream is whole (the encoder was flushed)
      if (event.content || event.interrupted) assistantLine().textContent = event.content;
      if (event.interrupted) state.assistantLine.classList.add("interrupted");
      state.assistantLine = null;
      if (!state.finished && !state.userLine) setStatus("listening");
      break;
    case "paused":
    case "resumed":
      pausePlayback(event.type === "paused");
      break;
    case "interrupted":
      stopPlayback();
      pausePlayback(false); // nothing is left to play: the next reply plays at once
      if (state.assistantLine) state.assistantLine.classList.add("interrupted");
      break;
    case "form_progress":
      showProgress(event.answered, event.total);
      addAnswer(event.field, event.value);
      break;
    case "form_complete":
      $("form").hidden = false;
      $("form-title").textContent = `Form ${event.form} complete`;
      $("form-progress").value = $("form-progress").max;
      break;
    case "metrics":
      if (event.end_of_turn_to_first_audio_ms != null) {
        const ms = Math.round(event.end_of_turn_to_first_audio_ms);
        $("latency").textContent = ` · last reply started ${ms} ms after you stopped`;
      }
      break;
    case "error":
      showError(`${event.stage}: ${event.message}`);
      break;
    case "finish":
      state.finished = true;
      state.finishReason = event.reason;
      stopCapture();
      setStatus(`finished (${event.reason})`);
      break;
  }
}

function showProgress(answered, total) {
  $("form").hidden = false;
  if (!$("form-title").textContent) $("form-title").textContent = "Form progress";
  $("form-progress").max = total;
  $("form-progress").value = answered;
}

function addAnswer(field, value) {
  const dt = document.createElement("dt");
  dt.textContent = field;
  const dd = document.createElement("dd");
  dd.textContent = typeof value === "string" ? value : JSON.stringify(value);
  $("form-answers").append(dt, dd);
}

$("start").addEventListener("click", () => start());
$("stop").addEventListener("click", stop);
loadModes();
