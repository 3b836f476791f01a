// retrotread's phone page. It speaks the MQTT contract over one WebSocket: frames in are
// {"topic", "payload"} (state, telemetry, event, walker, profiles, cmd/result, ...), frames
// out are cmd payloads. Nothing here is trusted to be current unless a frame arrived in
// the last few seconds: without the daemon the page says so and shows no numbers.
"use strict";

const SILENCE_MS = 6000; // the daemon sends "alive" every 2 s
const SPOKEN = new Set(["phase_started", "cue", "turn_required"]);
const ENDED = new Set(["idle", "stopped", "error", "disconnected"]);

const $ = (id) => document.getElementById(id);
const page = {
  ws: null,
  live: false,
  lastFrame: 0,
  lostSince: null,
  retries: 0,
  state: null,
  stateAt: 0,
  sent: new Map(), // id -> action, for the answers to our own commands
  n: 0,
  turnShown: false,
  sawTurning: false,
  walkers: [],
};
window.retrotread = page; // for people debugging on a phone, and for the tests

// ------------------------------------------------------------------ the connection

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/[^/]*$/, "");
  return `${scheme}//${location.host}${base}ws`;
}

function connect() {
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (e) {
    scheduleReconnect();
    return;
  }
  page.ws = ws;
  ws.onmessage = (m) => {
    page.lastFrame = Date.now();
    let f;
    try {
      f = JSON.parse(m.data);
    } catch (e) {
      return;
    }
    if (!page.live) setLive(true);
    onFrame(f.topic, f.payload);
  };
  ws.onclose = () => {
    if (page.ws === ws) {
      page.ws = null;
      setLive(false);
      scheduleReconnect();
    }
  };
  ws.onerror = () => {}; // onclose follows
}

function scheduleReconnect() {
  page.retries += 1;
  const delay = Math.min(5000, 500 * page.retries);
  $("banner-retry").textContent = `Trying again in ${Math.round(delay / 100) / 10} s…`;
  setTimeout(connect, delay);
}

// A daemon that died or a Wi-Fi that dropped may leave the socket open but silent.
setInterval(() => {
  if (page.live && Date.now() - page.lastFrame > SILENCE_MS) {
    const ws = page.ws;
    page.ws = null;
    setLive(false);
    if (ws) ws.close();
    scheduleReconnect();
  }
  tickLeft();
}, 500);

function setLive(live) {
  page.live = live;
  document.body.classList.toggle("lost", !live);
  for (const b of document.querySelectorAll(".ctl")) b.disabled = !live;
  const pill = $("link-daemon");
  if (live) {
    page.retries = 0;
    page.lostSince = null;
    pill.textContent = "retrotread: connected";
    pill.className = "pill ok";
    $("stop").textContent = "STOP";
  } else {
    page.lostSince = page.lostSince || new Date();
    pill.textContent = "retrotread: NOT CONNECTED";
    pill.className = "pill bad";
    $("stop").textContent = "NO LINK: use the treadmill's STOP";
    // Never show old numbers as if they were the belt's.
    for (const id of ["speed", "incline", "heart", "left", "target"]) $(id).textContent = "–";
    $("state").textContent = "not connected";
    $("phase").textContent = "";
    $("link-treadmill").textContent = "treadmill: unknown";
    $("link-treadmill").className = "pill";
    $("link-recording").textContent = "recording: unknown";
    $("link-recording").className = "pill";
    $("warning").hidden = true; // what the daemon said last is no longer known to hold
    hideTurn();
  }
  renderState();
}

// ------------------------------------------------------------------ frames in

function onFrame(topic, p) {
  if (topic === "state") onState(p);
  else if (topic === "telemetry") onTelemetry(p);
  else if (topic === "event") onEvent(p);
  else if (topic === "cmd/result") onResult(p);
  else if (topic === "profiles") onProfiles(p);
  else if (topic === "walker") onWalker(p);
}

function fmt(v, digits) {
  return typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–";
}

function clock(s) {
  if (typeof s !== "number" || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function onTelemetry(t) {
  $("speed").textContent = fmt(t.speed_kmh, 1);
  $("incline").textContent = fmt(t.incline_pct, 1);
  $("heart").textContent = t.heart_rate_bpm ? String(t.heart_rate_bpm) : "–";
  $("target").textContent = fmt(t.target_speed_kmh, 1);
}

function onState(s) {
  page.state = s;
  page.stateAt = Date.now();
  if (s.state === "turning") page.sawTurning = true;
  else if (page.turnShown && (page.sawTurning || ENDED.has(s.state))) hideTurn();
  renderState();
}

function renderState() {
  const s = page.state;
  if (!page.live || !s) return;
  $("state").textContent = s.state;
  $("phase").textContent = s.phase ? `· ${s.phase}` : "";
  tickLeft();
  const tm = $("link-treadmill");
  tm.textContent = s.connected ? "treadmill: connected" : "treadmill: NOT CONNECTED";
  tm.className = s.connected ? "pill ok" : "pill bad";
  const rec = $("link-recording");
  if (s.recording === false) {
    rec.textContent = "NOT RECORDING";
    rec.className = "pill bad";
  } else if (s.recording === true) {
    rec.textContent = "recording";
    rec.className = "pill ok";
  } else {
    rec.textContent = "no session";
    rec.className = "pill";
  }
  const warnings = [];
  if (s.stop_pending) {
    warnings.push(
      "STOP NOT CONFIRMED by the treadmill: use its own stop button or pull the safety key."
    );
  }
  if (!s.connected) warnings.push("The treadmill is not connected to retrotread.");
  if (s.belt === "running" && ENDED.has(s.state)) {
    warnings.push("The belt is moving without a session.");
  }
  const w = $("warning");
  w.textContent = warnings.join(" ");
  w.hidden = warnings.length === 0;
  const running = ["running", "finishing"].includes(s.state);
  $("pause").disabled = !running;
  $("skip").disabled = !(running || s.state === "paused");
  $("finish").disabled = !(running || s.state === "paused");
  $("resume").disabled = !["paused", "turning"].includes(s.state);
  const idle = ENDED.has(s.state);
  // One thing at a time: the session's buttons during a session, the start panel between.
  $("controls").hidden = idle;
  $("start-panel").hidden = !idle;
  document.body.classList.toggle("idle", idle); // between sessions, starting comes first
  $("start").disabled = !idle || !s.connected;
  $("start-today").disabled = !idle || !s.connected;
}

function tickLeft() {
  const s = page.state;
  if (!page.live || !s) return;
  let left = s.phase_remaining_s;
  if (typeof left === "number" && ["running", "finishing"].includes(s.state)) {
    left -= (Date.now() - page.stateAt) / 1000;
  }
  $("left").textContent = clock(left);
}

function onEvent(e) {
  if (e.type === "turn_required") showTurn(e.message);
  if (e.type === "command_refused") {
    if (!page.sent.has(e.id)) say(e.message, "refused"); // someone else's: ours has a result
    return;
  }
  if (SPOKEN.has(e.type) && e.message) speak(e.message);
  if (["cue", "phase_started", "session_finished", "stopped_by_treadmill", "error",
       "override", "link_lost", "link_restored"].includes(e.type) && e.message) {
    say(e.message, e.type === "error" ? "refused" : "");
  }
}

function onResult(r) {
  const action = page.sent.get(r.id);
  page.sent.delete(r.id);
  if (r.ok) {
    say(`${cap(r.action || action || "command")}: done`, "ok");
  } else {
    say(`${cap(r.action || action || "command")} refused: ${r.error}`, "refused");
  }
  if (r.action === "stop" || action === "stop") $("stop").classList.remove("sent");
}

function onProfiles(list) {
  const sel = $("profile");
  const keep = sel.value;
  sel.textContent = "";
  for (const p of list || []) {
    const o = document.createElement("option");
    o.value = p.name;
    o.textContent = `${p.title || p.name} (${clock(p.duration_s)})`;
    sel.appendChild(o);
  }
  if (keep) sel.value = keep;
}

function onWalker(w) {
  // The current walker's status (retained <base>/walker): the coach's today.
  if (!w || !Array.isArray(w.walkers)) return;
  page.walkers = w.walkers;
  $("walker-box").hidden = false;
  const sel = $("walker");
  sel.textContent = "";
  for (const name of w.walkers) {
    const o = document.createElement("option");
    o.value = o.textContent = name;
    sel.appendChild(o);
  }
  sel.value = w.walker;
  $("walker-choice").hidden = w.walkers.length < 2; // one walker: nobody to choose
  const t = w.today;
  $("today-info").textContent = t
    ? `Today: ${t.duration_min} min, ${t.backward_min} min backward at ${t.backward_speed_kmh} km/h`
    : w.refused || "";
}

// ------------------------------------------------------------------ what the walker sees and hears

function cap(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function say(text, kind) {
  const m = $("message");
  m.textContent = text;
  m.className = kind || "";
}

function speak(text) {
  if (!("speechSynthesis" in window)) return;
  try {
    const u = new SpeechSynthesisUtterance(text);
    u.rate = 0.95;
    window.speechSynthesis.cancel();
    window.speechSynthesis.speak(u);
  } catch (e) {
    /* no voice: the text is on screen */
  }
}

function showTurn(text) {
  page.turnShown = true;
  page.sawTurning = page.state && page.state.state === "turning";
  $("turn-text").textContent = text || "Turn around, then resume.";
  $("turn").hidden = false;
  if (navigator.vibrate) navigator.vibrate([400, 200, 400, 200, 400]);
}

function hideTurn() {
  page.turnShown = false;
  page.sawTurning = false;
  $("turn").hidden = true;
}

// ------------------------------------------------------------------ frames out

function send(command) {
  const ws = page.ws;
  if (!page.live || !ws || ws.readyState !== WebSocket.OPEN) {
    say("Not connected: nothing was sent.", "refused");
    return null;
  }
  page.n += 1;
  const id = `web-${page.n}-${Date.now() % 100000}`;
  page.sent.set(id, command.action);
  ws.send(JSON.stringify({ ...command, id }));
  return id;
}

// Speech needs one tap on a phone before it may talk: any first tap unlocks it.
let unlocked = false;
function unlockSpeech() {
  if (unlocked || !("speechSynthesis" in window)) return;
  unlocked = true;
  try {
    const u = new SpeechSynthesisUtterance(" ");
    u.volume = 0;
    window.speechSynthesis.speak(u);
  } catch (e) {
    /* fine */
  }
}

document.addEventListener("DOMContentLoaded", () => {
  // STOP acts on the finger touching it, not on its lifting: one tap, no confirmation.
  page.stopTaps = [];
  const stop = (ev) => {
    page.stopTaps.push(performance.timeOrigin + ev.timeStamp);
    if (!page.live) {
      say("NOT CONNECTED: use the treadmill's own stop button or its safety key.", "refused");
      return;
    }
    $("stop").classList.add("sent");
    send({ action: "stop" });
  };
  $("stop").addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    stop(ev);
  });
  // A keyboard or switch user's Enter or Space: a click with no pointer behind it.
  $("stop").addEventListener("click", (ev) => {
    if (ev.detail === 0) stop(ev);
  });
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", () => send({ action: b.dataset.action }));
  }
  $("start").addEventListener("click", () => {
    unlockSpeech();
    const profile = $("profile").value;
    if (profile) send({ action: "start", profile });
  });
  $("start-today").addEventListener("click", () => {
    unlockSpeech();
    send({ action: "start", today: true, walker: $("walker").value });
  });
  $("walker").addEventListener("change", () => send({ action: "walker", walker: $("walker").value }));
  $("history-toggle").addEventListener("click", toggleHistory);
  document.addEventListener("pointerdown", unlockSpeech, { once: true });
  setLive(false);
  connect();
});

// ------------------------------------------------------------------ history

async function toggleHistory() {
  const list = $("history");
  if (!list.hidden) {
    list.hidden = true;
    $("plot-box").hidden = true;
    return;
  }
  list.hidden = false;
  list.textContent = "Loading…";
  try {
    const r = await fetch("sessions", { cache: "no-store", credentials: "omit" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const sessions = await r.json();
    list.textContent = "";
    if (!sessions.length) list.textContent = "No sessions yet.";
    for (const s of sessions) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      const when = s.started_at ? new Date(s.started_at).toLocaleString() : "?";
      const back = s.backward_s != null ? ` · ${clock(s.backward_s)} backward` : "";
      b.textContent = `${when} · ${s.title}${s.walker ? " · " + s.walker : ""} · ${s.outcome}${back}`;
      b.addEventListener("click", () => showPlot(s, when));
      li.appendChild(b);
      list.appendChild(li);
    }
  } catch (e) {
    list.textContent = `History unavailable (${e.message}).`;
  }
}

function showPlot(s, when) {
  $("plot").src = `sessions/${encodeURIComponent(s.name)}/plot.png`;
  $("plot-caption").textContent = `${s.title}, ${when}`;
  $("plot-box").hidden = false;
}
