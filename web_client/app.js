// LiveFX web client: camera → WebRTC → LiveFX → processed video back, with live stats.
// Plain ES module, no build step. Signalling over the WebSocket at /ws (docs/protocol.md).

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const outputOnly = params.get("view") === "output";

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
  for (const [k, v] of params) if (k !== "view") s[k] = v;
  return s;
}

function showControlsFor(effect) {
  for (const el of document.querySelectorAll("[data-for]")) {
    el.hidden = el.dataset.for !== effect;
  }
}

function connectSignalling() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
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
    ws.onerror = () => reject(new Error("cannot reach the LiveFX server"));
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
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) await connectSignalling();
    const [width, height] = $("resolution").value.split("x").map(Number);
    const deviceId = $("camera").value;
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 }, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) },
      audio: false,
    });
    $("local").srcObject = state.stream;
    listCameras().catch(() => {});
    const pc = new RTCPeerConnection({ iceServers: [] });
    state.pc = pc;
    for (const track of state.stream.getVideoTracks()) pc.addTrack(track, state.stream);
    pc.ontrack = (event) => {
      $("remote").srcObject = event.streams[0] || new MediaStream([event.track]);
    };
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
  const response = await fetch(`/sessions/${state.session}/background`, { method: "POST", body: file });
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
  setInterval(ping, 2000);
  setInterval(renderStats, 1000);
  if (outputOnly) {
    document.body.classList.add("output-only");
    start();
    return;
  }
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  for (const id of ["effect", "strength", "colour", "background", "model", "region", "threshold", "feather", "smoothing"]) {
    $(id).addEventListener("change", sendSettings);
  }
  $("upload").addEventListener("change", uploadBackground);
  connectSignalling().catch((err) => show(err.message));
}

init();
