// LiveFX web client: camera → WebRTC → LiveFX → processed video back, with live stats.
// Plain ES module, no build step. Signalling over the WebSocket at /ws (docs/protocol.md).
// /?view=output: the processed video alone; /?view=whep&stream=NAME: play a WHEP stream.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const view = params.get("view") || "";
const outputOnly = view === "output" || view === "whep";
const PAGE_KEYS = new Set(["view", "token", "stream"]);

// ?token=… (what `livefx serve --token` prints) is kept for this tab and taken off the address
// bar, so that it does not end up in bookmarks or screenshots.
const token = params.get("token") || sessionStorage.getItem("livefx-token") || "";
if (params.has("token")) {
  sessionStorage.setItem("livefx-token", token);
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
}

function authHeaders(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function tokenProtocol() {
  // A browser's WebSocket cannot send Authorization: the token rides as a subprotocol.
  const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(token)));
  return `livefx.token.${b64.replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "")}`;
}

// What tests and curious users can read: window.livefx.framesDecoded, .stats, .state
const state = {
  ws: null,
  pc: null,
  stream: null,
  session: null,
  framesDecoded: 0,
  stats: null,
  state: "idle",
  pingSent: new Map(),
  wsRttMs: null,
  hello: null,
  whep: null, // the WHEP session's URL
  audioTracks: 0,
};
window.livefx = state;

function show(message) {
  $("message").textContent = message || "";
}

function settingsFromControls() {
  const effect = $("effect").value;
  const s = {
    effect,
    threshold: Number($("threshold").value),
    feather: Number($("feather").value),
    smoothing: Number($("smoothing").value),
    person_model: $("person_model").value,
  };
  if (effect === "blur") s.strength = Number($("strength").value);
  if (effect === "colour") s.colour = $("colour").value;
  if (effect === "replace") s.background = $("background").value || null;
  if (effect === "gan") {
    s.model = $("model").value;
    s.region = $("region").value;
  }
  return s;
}

function settingsFromQuery() {
  // /?view=output&effect=blur&strength=0.8 : the same names as POST /offer's query string
  const s = {};
  for (const [k, v] of params) if (!PAGE_KEYS.has(k)) s[k] = v;
  return s;
}

function showControlsFor(effect) {
  for (const el of document.querySelectorAll("[data-for]")) {
    el.hidden = el.dataset.for !== effect;
  }
}

function connectSignalling() {
  return new Promise((resolve, reject) => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url, token ? ["livefx", tokenProtocol()] : ["livefx"]);
    state.ws = ws;
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      handleMessage(msg);
      if (msg.type === "hello") resolve(msg);
    };
    ws.onerror = () => reject(new Error("cannot reach the LiveFX server (or the token is wrong)"));
    ws.onclose = () => {
      if (state.state === "live") show("signalling closed by the server");
      state.state = "closed";
    };
  });
}

async function handleMessage(msg) {
  switch (msg.type) {
    case "hello": {
      state.hello = msg;
      const select = $("background");
      select.replaceChildren(...msg.backgrounds.map((name) => new Option(name, name)));
      break;
    }
    case "answer":
      state.session = msg.session;
      await state.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      state.state = "live";
      break;
    case "stats":
      state.stats = msg;
      renderStats();
      break;
    case "pong": {
      const sent = state.pingSent.get(msg.id);
      if (sent !== undefined) {
        state.wsRttMs = performance.now() - sent;
        state.pingSent.delete(msg.id);
      }
      break;
    }
    case "settings":
      show("");
      break;
    case "error":
      show(`server: ${msg.message}`);
      break;
    case "closed":
      show(`session ended: ${msg.reason}`);
      break;
  }
}

function renderStats() {
  const s = state.stats;
  if (!s) return;
  const lines = [
    `fps in ${s.fps_in}  out ${s.fps_out}  dropped ${s.dropped}`,
    `quality ${s.quality ?? "-"}  model ${s.model ?? "-"}`,
    `rtt rtcp ${s.rtt_ms ?? "-"} ms  ws ${state.wsRttMs === null ? "-" : state.wsRttMs.toFixed(1)} ms`,
    `decoded here ${state.framesDecoded}`,
  ];
  for (const [stage, v] of Object.entries(s.stages || {})) {
    lines.push(`${stage.padEnd(10)} ${v.median_ms.toFixed(2)} / ${v.p95_ms.toFixed(2)} ms`);
  }
  $("stats").textContent = lines.join("\n");
}

function countDecodedFrames(video) {
  // Frames actually presented by the browser, counted by the client itself.
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const tick = () => {
      state.framesDecoded += 1;
      video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  } else {
    setInterval(() => {
      const q = video.getVideoPlaybackQuality?.();
      if (q) state.framesDecoded = q.totalVideoFrames;
    }, 250);
  }
}

async function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000); // send what we have: the server takes any host candidate
  });
}

async function listCameras() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const select = $("camera");
  const current = select.value;
  select.replaceChildren(new Option("default", ""));
  for (const d of devices.filter((d) => d.kind === "videoinput")) {
    select.append(new Option(d.label || `camera ${select.length}`, d.deviceId));
  }
  select.value = current;
}

async function start() {
  show("");
  $("start").disabled = true;
  try {
    if (!navigator.mediaDevices) {
      throw new Error("the camera needs a secure page: open it over HTTPS (livefx serve --cert/--key) or on localhost");
    }
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) await connectSignalling();
    const [width, height] = $("resolution").value.split("x").map(Number);
    const deviceId = $("camera").value;
    const video = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 }, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) };
    const wantAudio = outputOnly ? params.get("audio") !== "0" : $("audio").checked;
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video, audio: wantAudio });
    } catch (err) {
      if (!wantAudio) throw err;
      state.stream = await navigator.mediaDevices.getUserMedia({ video, audio: false }); // no microphone
    }
    $("local").srcObject = state.stream;
    listCameras().catch(() => {});
    const pc = new RTCPeerConnection({ iceServers: state.hello?.ice_servers || [] });
    state.pc = pc;
    for (const track of state.stream.getTracks()) pc.addTrack(track, state.stream);
    attachRemote(pc);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") show("connection failed");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const settings = outputOnly ? settingsFromQuery() : settingsFromControls();
    state.ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, settings }));
    $("stop").disabled = false;
  } catch (err) {
    show(err.message || String(err));
    $("start").disabled = false;
  }
}

function attachRemote(pc) {
  // The processed video and the audio that came back with it, in one stream: the browser keeps
  // them in sync (RTCP sender reports), the server sends them in sync.
  // (srcObject is set on the first track: an element with an empty stream would hold the
  // page's load event until media arrives.)
  const remote = new MediaStream();
  pc.ontrack = (event) => {
    remote.addTrack(event.track);
    if ($("remote").srcObject !== remote) $("remote").srcObject = remote;
    if (event.track.kind === "audio") state.audioTracks += 1;
  };
}

async function startWhep() {
  // A WHEP player: no camera, the named stream's processed video and its audio.
  const name = params.get("stream");
  if (!name) {
    show("view=whep needs &stream=NAME");
    return;
  }
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  attachRemote(pc);
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") retryWhep("connection failed");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc);
  const response = await fetch(`/whep/${encodeURIComponent(name)}`, {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/sdp" }),
    body: pc.localDescription.sdp,
  });
  if (response.status === 409) {
    const wait = Number(response.headers.get("Retry-After") || 2);
    pc.close();
    show(`waiting for a publisher on ${name}`);
    setTimeout(() => startWhep().catch((err) => show(err.message)), wait * 1000);
    return;
  }
  if (response.status !== 201) {
    show(`WHEP refused: ${response.status} ${await response.text()}`);
    return;
  }
  state.whep = new URL(response.headers.get("Location"), location.href).href;
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  state.state = "live";
  show("");
  $("remote").play().catch(() => {
    // Autoplay with sound needs a user gesture outside broadcast software's browser sources.
    $("remote").muted = true;
    $("remote").play().catch(() => {});
  });
}

function retryWhep(reason) {
  show(`${reason}; retrying`);
  state.pc?.close();
  setTimeout(() => startWhep().catch((err) => show(err.message)), 2000);
}

function endWhep() {
  if (state.whep) fetch(state.whep, { method: "DELETE", headers: authHeaders(), keepalive: true });
}

function stop() {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "bye" }));
  state.pc?.close();
  state.stream?.getTracks().forEach((t) => t.stop());
  state.ws?.close();
  state.ws = null;
  state.pc = null;
  state.state = "idle";
  $("start").disabled = false;
  $("stop").disabled = true;
  $("stats").textContent = "not connected";
}

function sendSettings() {
  showControlsFor($("effect").value);
  if (state.ws && state.session) {
    state.ws.send(JSON.stringify({ type: "settings", settings: settingsFromControls() }));
  }
}

async function uploadBackground() {
  const file = $("upload").files[0];
  if (!file || !state.session) {
    show("start the camera first, then upload a background");
    return;
  }
  const response = await fetch(`/sessions/${state.session}/background`, { method: "POST", headers: authHeaders(), body: file });
  if (!response.ok) {
    show(`upload refused: ${(await response.json()).error}`);
    return;
  }
  const option = new Option(`upload: ${file.name}`, "upload");
  $("background").append(option);
  $("background").value = "upload";
  sendSettings();
}

function ping() {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    const id = Math.floor(Math.random() * 1e9);
    state.pingSent.set(id, performance.now());
    state.ws.send(JSON.stringify({ type: "ping", id }));
  }
}

function init() {
  countDecodedFrames($("remote"));
  showControlsFor($("effect").value);
  $("sound").addEventListener("click", () => {
    $("remote").muted = !$("remote").muted;
    $("sound").textContent = $("remote").muted ? "sound off" : "sound on";
  });
  if (view === "whep") {
    document.body.classList.add("output-only");
    $("remote").muted = params.get("muted") === "1";
    window.addEventListener("pagehide", endWhep);
    startWhep().catch((err) => show(err.message));
    return;
  }
  setInterval(ping, 2000);
  setInterval(renderStats, 1000);
  if (outputOnly) {
    document.body.classList.add("output-only");
    start();
    return;
  }
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  for (const id of ["effect", "strength", "colour", "background", "model", "region", "threshold", "feather", "smoothing", "person_model"]) {
    $(id).addEventListener("change", sendSettings);
  }
  $("upload").addEventListener("change", uploadBackground);
  connectSignalling().catch((err) => show(err.message));
}

init();
