// Meeting transcripts page: upload (XHR progress, then job progress over SSE),
// past meetings, and a viewer whose transcript follows the audio player.
// All server text is inserted with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = 8; // speaker colours defined in meetings.css (--spk-0 .. --spk-7)
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const STAGES = {
  queued: "Waiting in the queue", starting: "Starting", resuming: "Resuming after a restart",
  "loading models": "Loading models", decode: "Reading the audio", transcribe: "Transcribing",
  diarize: "Telling speakers apart", align: "Matching words to speakers",
  summarize: "Writing the summary", done: "Done",
};

const state = { meeting: null, doc: null, segmentEls: [], current: -1, events: null, xhr: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

function when(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString(undefined, {
    dateStyle: "medium", timeStyle: "short",
  });
}

// --- API keys ---------------------------------------------------------------------
// With keys on, the key typed once is kept in sessionStorage (this tab only; the realtime
// page shares it) and sent as a bearer header. The event stream, the audio player and the
// download links cannot send headers: they use signed read links instead (one meeting,
// read-only, an hour; POST /v1/meetings/{id}/links), so the key never appears in a URL.
const KEY_STORAGE = "voiceAgent.apiKey";

function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

function withKey(headers = {}) {
  const key = storedKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

// After a 401 for a request sent with `used` (null: none): true when a key to retry with
// is now stored (another call may already have asked), after asking the user at most once.
function keyAfter401(used) {
  const now = storedKey();
  if (now && now !== used) return true;
  sessionStorage.removeItem(KEY_STORAGE);
  const message = used
    ? "That API key was not accepted. Enter a valid key (kept in this tab only):"
    : "This server needs an API key. Enter it (kept in this tab only):";
  const key = (window.prompt(message) || "").trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  return Boolean(key);
}

async function api(path, options = {}, retried = false) {
  const used = storedKey();
  const response = await fetch(path, { ...options, headers: withKey(options.headers) });
  if (response.status === 401 && !retried && keyAfter401(used)) return api(path, options, true);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401 && storedKey() === used) sessionStorage.removeItem(KEY_STORAGE);
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw Object.assign(new Error(message), { status: response.status, body });
  }
  return body;
}

// The meeting's URLs that the browser opens itself (events, audio, transcript, summary):
// signed read links when a key is in use, else the plain ones.
async function readUrls(meeting) {
  if (!storedKey()) return meeting.urls;
  const links = await api(`/v1/meetings/${meeting.id}/links`, { method: "POST" });
  return { ...meeting.urls, ...links.urls };
}

function withQuery(url, query) {
  return `${url}${url.includes("?") ? "&" : "?"}${query}`;
}

function showError(box, message) {
  box.textContent = message || "";
  box.hidden = !message;
}

// --- upload and job progress ---------------------------------------------------
function setProgress(label, percent) {
  $("job-progress").hidden = false;
  $("progress-label").textContent = label;
  $("progress-bar").value = Math.round(percent);
  $("progress-bar").textContent = `${Math.round(percent)}%`;
}

function uploadForm(event) {
  event.preventDefault();
  showError($("upload-error"), "");
  const file = $("file").files[0];
  if (!file) {
    showError($("upload-error"), "Choose a recording first.");
    $("file").focus();
    return;
  }
  const form = new FormData();
  form.append("file", file);
  if ($("num-speakers").value) form.append("num_speakers", $("num-speakers").value);
  if ($("language").value) form.append("language", $("language").value);
  form.append("summarize", $("summarize").checked ? "true" : "false");

  sendUpload(form, file, false);
}

function sendUpload(form, file, retried) {
  const used = storedKey();
  const xhr = (state.xhr = new XMLHttpRequest());
  xhr.open("POST", "/v1/meetings");
  if (used) xhr.setRequestHeader("Authorization", `Bearer ${used}`);
  xhr.responseType = "json";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress(`Uploading ${file.name}…`, (100 * e.loaded) / e.total);
  };
  xhr.onload = () => {
    state.xhr = null;
    if (xhr.status === 401 && !retried && keyAfter401(used)) {
      sendUpload(form, file, true);
    } else if (xhr.status === 202) {
      $("upload-status").textContent = "Uploaded. Processing…";
      $("upload-form").reset();
      follow(xhr.response);
      loadList();
    } else {
      const error = xhr.response && xhr.response.error;
      uploadDone(error ? error.message : `Upload failed (HTTP ${xhr.status}).`);
    }
  };
  xhr.onerror = () => uploadDone("The upload failed: the server could not be reached.");
  xhr.onabort = () => uploadDone("Upload cancelled.");
  $("upload-button").disabled = true;
  $("cancel-button").hidden = false;
  setProgress(`Uploading ${file.name}…`, 0);
  xhr.send(form);
}

function uploadDone(error) {
  $("upload-button").disabled = false;
  $("cancel-button").hidden = true;
  $("job-progress").hidden = true;
  if (error) showError($("upload-error"), error);
}

async function follow(meeting) {
  if (state.events) state.events.close();
  state.followed = meeting.id;
  let urls;
  try {
    urls = await readUrls(meeting);
  } catch (error) {
    uploadDone(`Could not follow the processing: ${error.message}`);
    return;
  }
  if (state.followed !== meeting.id) return; // another upload took over meanwhile
  const source = (state.events = new EventSource(urls.events));
  let lastStage = null;
  source.addEventListener("job", (e) => {
    const job = JSON.parse(e.data);
    const stage = STAGES[job.stage] || STAGES[job.state] || job.stage || job.state;
    setProgress(`${stage} — ${Math.round(job.progress * 100)}%`, job.progress * 100);
    if (job.stage !== lastStage && !FINAL.has(job.state)) loadList(); // keep the list's badge current
    lastStage = job.stage;
    if (FINAL.has(job.state)) {
      source.close();
      state.events = null;
      uploadDone(job.state === "failed" ? `Processing failed: ${job.error.message}` : null);
      $("upload-status").textContent = job.state === "succeeded"
        ? "Done. The transcript is shown below." : `The meeting ${job.state}.`;
      loadList();
      if (job.state === "succeeded") openMeeting(job.id, true);
    }
  });
  source.addEventListener("deleted", () => { source.close(); uploadDone("The meeting was deleted."); });
  // The browser retries a dropped stream by itself, but not one refused (an expired read
  // link, a restarted server): follow again with fresh links.
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED || state.events !== source) return;
    state.events = null;
    setTimeout(() => { if (state.followed === meeting.id && !state.events) follow(meeting); }, 2000);
  });
}

function cancelCurrent() {
  if (state.xhr) state.xhr.abort();
  else if (state.followed) api(`/v1/meetings/${state.followed}/cancel`, { method: "POST" }).catch(() => {});
}

// --- past meetings ---------------------------------------------------------------
async function loadList() {
  let meetings;
  try {
    meetings = (await api("/v1/meetings")).data;
  } catch (error) {
    showError($("upload-error"), `Could not load past meetings: ${error.message}`);
    return;
  }
  const list = $("meeting-list");
  list.replaceChildren(...meetings.map(meetingItem));
  $("list-empty").hidden = meetings.length > 0;
}

function meetingItem(m) {
  const name = m.filename || "Recording";
  const details = [when(m.created_at), m.duration ? clock(m.duration) : null].filter(Boolean).join(" · ");
  const badge = el("span", { class: `badge ${m.state}`, text: m.state === "running"
    ? `running ${Math.round(m.progress * 100)}%` : m.state });
  const actions = el("div", { class: "item-actions" });
  if (m.state === "succeeded") {
    actions.append(el("button", { type: "button", class: "small", text: "Open",
      "aria-label": `Open ${name}`, onclick: () => openMeeting(m.id, true) }));
  } else if (!FINAL.has(m.state)) {
    actions.append(el("button", { type: "button", class: "small", text: "Cancel",
      "aria-label": `Cancel ${name}`,
      onclick: () => api(`/v1/meetings/${m.id}/cancel`, { method: "POST" }).then(loadList, loadList) }));
  }
  actions.append(el("button", { type: "button", class: "small danger", text: "Delete",
    "aria-label": `Delete ${name}`, onclick: () => deleteMeeting(m, name) }));
  const error = m.error ? el("p", { class: "hint", text: m.error.message }) : null;
  return el("li", { class: "meeting" },
    el("div", { class: "item-main" }, el("strong", { text: name }), " ", badge,
      el("div", { class: "hint", text: details }), error),
    actions);
}

async function deleteMeeting(meeting, name) {
  if (!confirm(`Delete “${name}” with its audio, transcript and summary?`)) return;
  try {
    await api(`/v1/meetings/${meeting.id}`, { method: "DELETE" });
  } catch (error) {
    showError($("upload-error"), `Could not delete: ${error.message}`);
  }
  if (state.meeting && state.meeting.id === meeting.id) closeViewer();
  loadList();
}

// --- viewer ------------------------------------------------------------------------
function closeViewer() {
  $("viewer").hidden = true;
  $("player").removeAttribute("src");
  state.meeting = state.doc = null;
  history.replaceState(null, "", location.pathname);
}

async function openMeeting(id, focus) {
  showError($("viewer-error"), "");
  try {
    const [meeting, doc] = await Promise.all([
      api(`/v1/meetings/${id}`), api(`/v1/meetings/${id}/transcript?format=json`)]);
    const urls = await readUrls(meeting);
    state.meeting = meeting;
    history.replaceState(null, "", `#meeting=${id}`);
    $("viewer").hidden = false;
    $("viewer-heading").textContent = meeting.filename || "Meeting";
    $("viewer-meta").textContent = `${when(meeting.created_at)} · ${clock(doc.duration)} · ` +
      `${Object.keys(doc.speakers).length} speaker(s)`;
    if ($("player").dataset.id !== id) {
      $("player").src = urls.audio;
      $("player").dataset.id = id;
    }
    for (const link of document.querySelectorAll(".downloads a[data-format]")) {
      link.href = withQuery(urls.transcript, `format=${link.dataset.format}`);
    }
    $("summary-download").href = withQuery(urls.summary, "format=md");
    $("summary-download").hidden = !meeting.options.summarize;
    showDocument(doc);
    await showSummary(meeting);
    if (focus) $("viewer").focus();
  } catch (error) {
    $("viewer").hidden = false;
    showError($("viewer-error"), `Could not open the meeting: ${error.message}`);
  }
}

// A read link expires after an hour: when the player fails (an expired link refuses its
// next range request), fetch fresh links and resume where it was, at most once a minute.
async function renewAudioLink() {
  const player = $("player");
  const meeting = state.meeting;
  if (!meeting || !storedKey() || Date.now() - (state.linkRenewedAt || 0) < 60000) return;
  state.linkRenewedAt = Date.now();
  const at = player.currentTime;
  try {
    player.src = (await readUrls(meeting)).audio;
    player.currentTime = at;
  } catch (error) {
    showError($("viewer-error"), `The audio is unavailable: ${error.message}`);
  }
}

function speakerIndex(doc, label) {
  return Object.keys(doc.speakers).indexOf(label) % PALETTE;
}

function showDocument(doc) {
  state.doc = doc;
  state.current = -1;
  state.segmentEls = doc.segments.map((seg) => {
    const button = el("button", { type: "button", class: "segment", "data-id": seg.id,
      style: `--spk: var(--spk-${speakerIndex(doc, seg.speaker)})`,
      onclick: () => seek(seg.start) },
      el("span", { class: "who", text: doc.speakers[seg.speaker] || seg.speaker }),
      el("span", { class: "time", text: clock(seg.start) }),
      seg.text
        ? el("span", { class: "text", text: seg.text })
        : el("span", { class: "text crosstalk", text: "(speaking over another speaker, words not heard)" }));
    return el("li", { id: `segment-${seg.id}` }, button);
  });
  $("segments").replaceChildren(...state.segmentEls);
  $("speaker-fields").replaceChildren(...Object.entries(doc.speakers).map(([label, name], i) =>
    el("div", { class: "field" },
      el("label", { for: `speaker-${i}`, style: `--spk: var(--spk-${i % PALETTE})`,
        class: "speaker-label", text: `${label.replace("SPEAKER_", "Voice ")}` }),
      el("input", { id: `speaker-${i}`, name: label, value: name, maxlength: "100",
        autocomplete: "off" }))));
}

function seek(seconds) {
  const player = $("player");
  player.currentTime = seconds;
  player.play().catch(() => {}); // autoplay may be refused; the position is still set
  highlight(seconds);
}

function highlight(time) {
  const segments = state.doc ? state.doc.segments : [];
  let index = -1;
  for (let i = 0; i < segments.length && segments[i].start <= time; i++) {
    if (time < segments[i].end + 0.3) index = i;
  }
  if (index === state.current) return;
  if (state.current >= 0) state.segmentEls[state.current].firstChild.removeAttribute("aria-current");
  state.current = index;
  if (index >= 0) {
    const button = state.segmentEls[index].firstChild;
    button.setAttribute("aria-current", "true");
    if ($("follow").checked && !$("player").paused) button.scrollIntoView({ block: "nearest" });
  }
}

async function showSummary(meeting) {
  const box = $("summary");
  box.hidden = true;
  if (!meeting.options.summarize) return;
  let summary;
  try {
    summary = await api(meeting.urls.summary);
  } catch (error) {
    if (error.status !== 404) showError($("viewer-error"), `Summary unavailable: ${error.message}`);
    return;
  }
  const parts = [["Key points", summary.key_points], ["Decisions", summary.decisions],
    ["Action items", summary.action_items], ["Open questions", summary.open_questions]];
  const body = [el("p", { class: "summary-title", text: summary.title })];
  for (const [heading, items] of parts) {
    if (!items || !items.length) continue;
    body.push(el("h4", { text: heading }), el("ul", {}, ...items.map(summaryItem)));
  }
  $("summary-body").replaceChildren(...body);
  box.hidden = false;
}

function summaryItem(item) {
  const extra = [item.owner && `owner: ${item.owner}`, item.due && `due: ${item.due}`].filter(Boolean);
  const li = el("li", {}, item.text + (extra.length ? ` (${extra.join("; ")})` : ""));
  for (const id of item.citations || []) {
    const seg = state.doc.segments.find((s) => s.id === id);
    if (!seg) continue;
    li.append(" ", el("a", { href: `#segment-${id}`, class: "cite", text: `[${clock(seg.start)}]`,
      "aria-label": `Play from ${clock(seg.start)}`,
      onclick: (e) => { e.preventDefault(); jumpTo(seg); } }));
  }
  return li;
}

function jumpTo(seg) {
  const button = $(`segment-${seg.id}`).firstChild;
  button.scrollIntoView({ block: "center" });
  button.focus({ preventScroll: true });
  seek(seg.start);
}

async function saveSpeakers(event) {
  event.preventDefault();
  const names = {};
  for (const input of $("speaker-fields").querySelectorAll("input")) {
    if (input.value.trim() && input.value.trim() !== state.doc.speakers[input.name]) {
      names[input.name] = input.value.trim();
    }
  }
  if (!Object.keys(names).length) {
    $("speakers-status").textContent = "No changes.";
    return;
  }
  try {
    const result = await api(`/v1/meetings/${state.meeting.id}/speakers`, {
      method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(names),
    });
    state.doc.speakers = result.speakers;
    showDocument(state.doc);
    await showSummary(state.meeting);
    $("speakers-status").textContent = "Names saved.";
  } catch (error) {
    $("speakers-status").textContent = `Not saved: ${error.message}`;
  }
}

function start() {
  $("upload-form").addEventListener("submit", uploadForm);
  $("cancel-button").addEventListener("click", cancelCurrent);
  $("refresh-button").addEventListener("click", loadList);
  $("speakers-form").addEventListener("submit", saveSpeakers);
  $("player").addEventListener("timeupdate", () => highlight($("player").currentTime));
  $("player").addEventListener("error", renewAudioLink);
  loadList();
  const match = location.hash.match(/^#meeting=([0-9a-f]{32})$/);
  if (match) openMeeting(match[1], false);
}

start();
