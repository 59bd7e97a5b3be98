// Browser client of the voice agent: one WebRTC call to POST /v1/realtime/calls.
// The microphone goes out as an audio track, the agent's voice comes back as one,
// and protocol events (transcripts, speech start/stop, latency) arrive on the
// "oai-events" data channel. Query flags: ?loopback=1 offers only 127.0.0.1
// candidates (testing on one machine); ?raw=1 turns off the browser's microphone
// processing (echo cancellation, noise suppression, gain control).
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const LOOPBACK = params.get("loopback") === "1";
  const RAW_MIC = params.get("raw") === "1";
  const AGENT_LEVEL_SPEAKING = 0.01; // RMS of the analyser's float samples
  const CONNECT_TIMEOUT_MS = 15000; // answer received → session.created on the data channel
  // Protocol extensions this page shows: latency table, speaker labels, echo marks, live partials.
  const EXTENSIONS = ["latency", "speakers", "echo", "partials"];

  const $ = (id) => document.getElementById(id);
  const ui = {
    button: $("call-button"),
    status: $("call-status"),
    error: $("error"),
    user: $("user-indicator"),
    agent: $("agent-indicator"),
    transcript: $("transcript"),
    empty: $("conversation-empty"),
    latencyBody: document.querySelector("#latency-table tbody"),
    audio: $("remote-audio"),
    meetingMode: $("meeting-mode"),
    meetingTitle: $("meeting-title"),
  };

  // Test hook: the state a browser test reads (never written from outside).
  const hook = {
    state: "idle", // idle | connecting | connected | ended
    connected: false,
    transcripts: [], // {role, itemId, text, final, speaker}
    latencies: [], // voice.latency events' latency_ms, in order
    bytesReceived: 0,
    agentLevelMax: 0,
    agentVoicedTicks: 0,
    errors: [],
    eventCounts: {},
  };
  window.voiceAgent = hook;

  let call = null; // {pc, channel, mic, audioContext, timers, location}

  // --- status, errors, indicators ---------------------------------------------
  function setState(state, message) {
    hook.state = state;
    hook.connected = state === "connected";
    ui.button.dataset.state = state;
    ui.button.disabled = state === "connecting";
    ui.button.textContent = state === "connected" ? "Hang up" : state === "connecting" ? "Connecting…" : "Start talking";
    if (message) ui.status.textContent = message;
  }

  function showError(message) {
    hook.errors.push(message);
    ui.error.textContent = message;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.hidden = true;
    ui.error.textContent = "";
  }

  function setSpeaking(indicator, speaking) {
    if ((indicator.dataset.speaking === "true") === speaking) return;
    indicator.dataset.speaking = String(speaking);
    indicator.querySelector(".state").textContent = speaking ? "speaking" : "quiet";
  }

  // --- conversation log ----------------------------------------------------------
  function turn(role, itemId) {
    let entry = hook.transcripts.find((t) => t.itemId === itemId && t.role === role);
    if (!entry) {
      const li = document.createElement("li");
      li.className = `turn ${role} partial`;
      li.innerHTML = `<span class="role">${role === "user" ? "You" : "Agent"}</span><span class="text"></span>`;
      ui.transcript.append(li);
      ui.empty.hidden = true;
      entry = { role, itemId, text: "", final: false, li };
      hook.transcripts.push(entry);
      Object.defineProperty(entry, "li", { enumerable: false }); // keep the hook serialisable
    }
    return entry;
  }

  function setSpeaker(entry, speaker) {
    if (!speaker || entry.speaker === speaker) return;
    entry.speaker = speaker;
    entry.li.querySelector(".role").textContent = speaker;
  }

  function removeTurn(itemId) {
    const index = hook.transcripts.findIndex((t) => t.itemId === itemId);
    if (index < 0) return;
    hook.transcripts[index].li.remove();
    hook.transcripts.splice(index, 1);
  }

  function setText(entry, text, final) {
    entry.text = text;
    entry.final = final;
    entry.li.querySelector(".text").textContent = text;
    entry.li.classList.toggle("partial", !final);
    entry.li.scrollIntoView({ block: "nearest" });
  }

  function addNote(entry, note) {
    const span = document.createElement("span");
    span.className = "note";
    span.textContent = ` (${note})`;
    entry.li.append(span);
  }

  function addLatency(event) {
    const ms = event.latency_ms || {};
    hook.latencies.push(ms);
    const row = document.createElement("tr");
    const cells = [hook.latencies.length, ms.speech_stopped, ms.stt_final, ms.llm_first_token, ms.tts_first_audio, ms.first_audio_sent];
    row.innerHTML = cells.map((v, i) => (i === 0 ? `<th scope="row">${v}</th>` : `<td>${v == null ? "–" : Math.round(v)}</td>`)).join("");
    ui.latencyBody.append(row);
  }

  // --- server events -----------------------------------------------------------------
  const handlers = {
    "session.created": () => {
      call.channel.send(JSON.stringify({ type: "session.update", session: { type: "realtime", voice_extensions: EXTENSIONS } }));
      if (ui.meetingMode.checked) {
        startMeeting();
        setState("connected", "Recording the meeting. Everyone's words appear below; hang up to save it.");
      } else {
        setState("connected", "Connected. Start talking; the agent answers when you pause.");
      }
    },
    "input_audio_buffer.speech_started": (e) => {
      setSpeaking(ui.user, true);
      turn("user", e.item_id);
    },
    "input_audio_buffer.speech_stopped": () => setSpeaking(ui.user, false),
    "conversation.item.input_audio_transcription.delta": (e) => {
      const entry = turn("user", e.item_id);
      setSpeaker(entry, e.speaker);
      if (!entry.final) setText(entry, e.partial != null ? e.partial : entry.text + e.delta, false);
    },
    "conversation.item.input_audio_transcription.completed": (e) => {
      if (e.echo) return removeTurn(e.item_id); // the agent's own voice, heard back
      const entry = turn("user", e.item_id);
      setSpeaker(entry, e.speaker);
      setText(entry, e.transcript, true);
      if (!e.transcript) addNote(entry, "no words recognised");
    },
    "conversation.item.deleted": (e) => removeTurn(e.item_id),
    "conversation.item.input_audio_transcription.failed": (e) => {
      addNote(turn("user", e.item_id), "could not be transcribed");
    },
    "response.output_audio_transcript.delta": (e) => {
      const entry = turn("agent", e.item_id);
      setText(entry, entry.text + e.delta, false);
    },
    "response.output_text.delta": (e) => {
      const entry = turn("agent", e.item_id);
      setText(entry, entry.text + e.delta, false);
    },
    "response.output_item.done": (e) => {
      const item = e.item || {};
      if (item.type !== "message") return;
      const entry = turn("agent", item.id);
      setText(entry, entry.text, true);
      if (item.status === "incomplete") addNote(entry, "interrupted");
    },
    "voice.latency": addLatency,
    error: (e) => showError(`The agent reported a problem: ${(e.error && e.error.message) || "unknown error"}`),
  };

  function onEvent(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    hook.eventCounts[event.type] = (hook.eventCounts[event.type] || 0) + 1;
    const handler = handlers[event.type];
    if (handler) handler(event);
  }

  // --- media -----------------------------------------------------------------------------
  async function openMicrophone() {
    const processing = !RAW_MIC;
    try {
      return await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
      });
    } catch (err) {
      const reasons = {
        NotAllowedError: "Microphone access was denied. Allow the microphone for this page in your browser's site settings, then press “Start talking” again.",
        SecurityError: "Microphone access was denied. Allow the microphone for this page in your browser's site settings, then press “Start talking” again.",
        NotFoundError: "No microphone was found. Connect one and try again.",
        NotReadableError: "The microphone is busy or unavailable (another application may be using it).",
      };
      throw new Error(reasons[err.name] || `The microphone could not be opened (${err.message || err.name}).`);
    }
  }

  function watchAgentAudio(stream, audioContext) {
    ui.audio.srcObject = stream; // Chrome only feeds WebAudio from a remote stream that also plays
    const source = audioContext.createMediaStreamSource(stream);
    const analyser = audioContext.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    return setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const rms = Math.sqrt(sum / samples.length);
      hook.agentLevelMax = Math.max(hook.agentLevelMax, rms);
      const speaking = rms > AGENT_LEVEL_SPEAKING;
      if (speaking) hook.agentVoicedTicks += 1;
      setSpeaking(ui.agent, speaking);
    }, 50);
  }

  function watchStats(pc) {
    return setInterval(async () => {
      const stats = await pc.getStats();
      stats.forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "audio") hook.bytesReceived = report.bytesReceived;
      });
    }, 500);
  }

  // --- signalling ----------------------------------------------------------------------
  function gathered(pc, timeoutMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") resolve();
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, timeoutMs);
    });
  }

  // On loopback tests only 127.0.0.1 UDP candidates are kept (see WEBRTC-TESTING.md).
  function loopbackOnly(sdp) {
    return sdp
      .split("\r\n")
      .filter((line) => {
        if (!line.startsWith("a=candidate:")) return true;
        const parts = line.split(" ");
        return parts[2].toLowerCase() === "udp" && parts[4] === "127.0.0.1";
      })
      .join("\r\n");
  }

  // --- API key (only when the server asks for one) --------------------------------------
  // The key typed once is kept in sessionStorage (this tab only); before each call it is
  // exchanged for a short-lived client secret, which is what the call itself carries.
  const KEY_STORAGE = "voiceAgent.apiKey";

  function askForKey() {
    const key = (window.prompt("This server needs an API key. Enter it (kept in this tab only):") || "").trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    return Boolean(key);
  }

  async function clientSecret() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (!key) return null;
    const response = await fetch("/v1/realtime/client_secrets", {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: "{}",
    });
    if (response.status === 401) {
      sessionStorage.removeItem(KEY_STORAGE);
      throw new Error("The API key was not accepted. Press “Start talking” to enter it again.");
    }
    if (!response.ok) throw new Error(`The server refused the API key exchange (status ${response.status}).`);
    return (await response.json()).value;
  }

  function authHeaders(secret) {
    return secret ? { Authorization: `Bearer ${secret}` } : {};
  }

  async function postOffer(sdp) {
    let response;
    let secret = null;
    const send = () => fetch("/v1/realtime/calls", { method: "POST", headers: { "Content-Type": "application/sdp", ...authHeaders(secret) }, body: sdp });
    try {
      secret = await clientSecret();
      response = await send();
      if (response.status === 401 && !secret && askForKey()) {
        secret = await clientSecret();
        response = await send();
      }
    } catch (err) {
      if (err instanceof TypeError) throw new Error("The server could not be reached. Check that it is running and that this page's address is right.");
      throw err;
    }
    if (response.status !== 201) {
      let detail = `status ${response.status}`;
      try {
        detail = (await response.json()).error.message;
      } catch {}
      throw new Error(`The server refused the call: ${detail}`);
    }
    return { answer: await response.text(), location: response.headers.get("Location"), secret };
  }

  async function connect() {
    clearError();
    setState("connecting", "Asking for the microphone…");
    const audioContext = new AudioContext();
    const current = { pc: null, channel: null, mic: null, audioContext, timers: [], location: null };
    call = current;
    try {
      current.mic = await openMicrophone();
      setState("connecting", "Connecting to the agent…");
      const pc = new RTCPeerConnection({ iceServers: [] });
      current.pc = pc;
      current.mic.getTracks().forEach((track) => pc.addTrack(track, current.mic));
      const channel = pc.createDataChannel("oai-events");
      current.channel = channel;
      channel.addEventListener("message", onEvent);
      channel.addEventListener("close", () => dropped(current));
      pc.addEventListener("track", (e) => current.timers.push(watchAgentAudio(e.streams[0] || new MediaStream([e.track]), audioContext)));
      pc.addEventListener("connectionstatechange", () => onConnectionState(current));
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 3000);
      const offer = LOOPBACK ? loopbackOnly(pc.localDescription.sdp) : pc.localDescription.sdp;
      const { answer, location: callUrl, secret } = await postOffer(offer);
      current.location = callUrl;
      current.secret = secret;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      current.timers.push(watchStats(pc));
      current.timers.push(setTimeout(() => hook.state === "connecting" && dropped(current), CONNECT_TIMEOUT_MS));
      if (call !== current) return; // hung up meanwhile
      if (audioContext.state === "suspended") await audioContext.resume();
    } catch (err) {
      await hangUp(current, null);
      showError(err.message || String(err));
      setState("idle", "Not connected.");
    }
  }

  // Meeting mode: transcribe everyone, never answer, store the recording as a meeting.
  function startMeeting() {
    const title = ui.meetingTitle.value.trim() || `Meeting ${new Date().toLocaleString()}`;
    const quiet = { type: "server_vad", create_response: false, interrupt_response: false };
    call.channel.send(JSON.stringify({
      type: "session.update",
      session: { type: "realtime", audio: { input: { turn_detection: quiet } }, meeting: { record: true, title } },
    }));
  }

  // The server ended the call (its data channel closed) or the network failed.
  function dropped(current) {
    if (call !== current) return;
    const wasConnected = hook.connected;
    hangUp(current, wasConnected ? "ended" : "idle");
    showError(
      wasConnected
        ? "The call dropped: the connection to the agent was lost. Press “Start talking” to call again."
        : "Could not connect to the agent: no network path was found between this browser and the server.",
    );
  }

  function onConnectionState(current) {
    const state = current.pc.connectionState;
    if (call !== current) return;
    if (state === "failed" || state === "closed") {
      dropped(current);
    } else if (state === "disconnected") {
      setState("connected", "The connection is unstable; trying to keep the call…");
    }
  }

  async function hangUp(current, finalState = "ended") {
    if (!current) return;
    if (call === current) call = null;
    current.timers.forEach((timer) => clearTimeout(timer)); // clears intervals too
    if (current.location) fetch(`${current.location}/hangup`, { method: "POST", keepalive: true, headers: authHeaders(current.secret) }).catch(() => {});
    if (current.pc) current.pc.close();
    if (current.mic) current.mic.getTracks().forEach((t) => t.stop());
    current.audioContext.close().catch(() => {});
    ui.audio.srcObject = null;
    setSpeaking(ui.user, false);
    setSpeaking(ui.agent, false);
    if (finalState) setState(finalState, "Call ended. Press “Start talking” to call again.");
  }

  ui.button.addEventListener("click", () => (call ? hangUp(call) : connect()));
  window.addEventListener("pagehide", () => hangUp(call, null));
})();
