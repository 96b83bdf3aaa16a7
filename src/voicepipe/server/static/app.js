// The voicepipe page: microphone -> WebSocket -> the server's pipeline -> speakers.
//
// Wire protocol (docs/server.md): we send binary frames of PCM16 mono at the
// rate the server's `session` event announces, and {"type": "stop"} when the
// user presses Stop; the server sends one JSON event per text frame and the
// reply's audio as binary PCM16 frames, then closes after `finish`.
// When the server needs an access token, open the page as /#token=... (a fragment
// never leaves the browser); it is sent in the Sec-WebSocket-Protocol header.
"use strict";

const $ = (id) => document.getElementById(id);

// Everything about the current session; `window.voicepipe` lets tests look in.
const state = {
  ws: null,
  ctx: null, // one AudioContext for capture and playback
  stream: null, // the microphone
  capture: null, // the AudioWorkletNode
  outFormat: { sample_rate: 24000, channels: 1 },
  playHead: 0, // AudioContext time at which the next reply chunk starts
  playing: new Set(), // AudioBufferSourceNodes scheduled or sounding
  cutOff: 0, // how many of them an interruption stopped
  sentBytes: 0,
  receivedBytes: 0,
  inRate: 16000,
  events: [], // types of the events received, in order
  userLine: null,
  assistantLine: null,
  finished: false,
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
  const sent = state.sentBytes / 2 / state.inRate;
  const received = state.receivedBytes / 2 / state.outFormat.channels / state.outFormat.sample_rate;
  $("stats").textContent = `audio sent: ${sent.toFixed(1)} s · audio received: ${received.toFixed(1)} s`;
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

async function start() {
  $("start").disabled = true;
  $("mode").disabled = true;
  $("conversation").replaceChildren();
  $("errors").replaceChildren();
  Object.assign(state, { sentBytes: 0, receivedBytes: 0, cutOff: 0, events: [], finished: false });
  state.userLine = state.assistantLine = null;
  try {
    // Created on the click, so the browser lets it play sound.
    state.ctx = new AudioContext();
    await state.ctx.audioWorklet.addModule("/static/worklet.js");
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    showError(`microphone: ${err.message || err}`);
    teardown();
    return;
  }
  connect($("mode").value);
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function connect(path) {
  const page = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams();
  const session = fragment.get("session") || page.get("session");
  if (session) query.set("session", session);
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
    if (event.code !== 1000 && event.code !== 1005) {
      showError(`connection closed (${event.code})${event.reason ? ": " + event.reason : ""}`);
    }
    if (!state.finished) setStatus(`closed (${event.code})`);
    teardown();
  };
  $("stop").disabled = false;
}

function startCapture(rate) {
  state.inRate = rate;
  const source = state.ctx.createMediaStreamSource(state.stream);
  const node = new AudioWorkletNode(state.ctx, "pcm-capture", {
    processorOptions: { targetRate: rate, chunkMs: 20 },
  });
  node.port.onmessage = (message) => {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(message.data);
      state.sentBytes += message.data.byteLength;
      updateStats();
    }
  };
  source.connect(node);
  node.connect(state.ctx.destination); // the node outputs silence; this keeps it running
  state.capture = node;
}

function stopCapture() {
  if (state.capture) {
    state.capture.port.onmessage = null;
    state.capture.disconnect();
    state.capture = null;
  }
  if (state.stream) {
    for (const track of state.stream.getTracks()) track.stop();
    state.stream = null;
  }
}

function stop() {
  // No more audio: the server answers what was said, then finishes and closes.
  stopCapture();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "stop" }));
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
  const ctx = state.ctx;
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
      if (event.output_format) state.outFormat = event.output_format;
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
      if (event.content || event.interrupted) assistantLine().textContent = event.content;
      if (event.interrupted) state.assistantLine.classList.add("interrupted");
      state.assistantLine = null;
      if (!state.finished && !state.userLine) setStatus("listening");
      break;
    case "interrupted":
      stopPlayback();
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

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
loadModes();
