// edge-mm playground: plain JS over the public API only (GET /v1/models, POST /v1/<route>).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const KEY_STORE = "edge-mm-api-key";

// ------------------------------------------------------------------ the API

function authHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

/** POST or GET ``path``; ``json`` (an object) or ``form`` (FormData) is the body. Throws with the server's message. */
async function api(path, { json, form, method } = {}) {
  const init = { method: method || (json || form ? "POST" : "GET"), headers: authHeaders() };
  if (json) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  const response = await fetch(path, init);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message || body.error : response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

function chosenModel(route, root = document) {
  const select = $(`select.model[data-route="${route}"]`, root);
  return select && select.value ? select.value : undefined;
}

function formWith(field, file, options) {
  const form = new FormData();
  form.append(field, file, file.name);
  for (const [name, value] of Object.entries(options)) {
    if (value !== undefined && value !== "") form.append(name, value);
  }
  return form;
}

/** Run ``work`` for a panel: clears its error, disables its buttons, shows a failure in the panel. */
async function inPanel(panel, work) {
  const error = $(":scope > .error", panel);
  const buttons = $$("button", panel);
  error.textContent = "";
  panel.dataset.state = "running";
  buttons.forEach((b) => (b.disabled = true));
  try {
    await work();
    panel.dataset.state = "done";
  } catch (exc) {
    error.textContent = exc.message;
    panel.dataset.state = "error";
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "style") Object.assign(node.style, value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/** A list of {label, score} as horizontal bars (scores in 0..1). */
function bars(container, rows) {
  container.replaceChildren(
    ...rows.map((r) =>
      el(
        "div",
        { class: "bar" },
        el("span", { class: "label", title: r.label }, r.label),
        el("span", { class: "fill", style: { width: `${Math.max(1, Math.round(r.score * 100))}%` } }),
        el("span", { class: "num" }, r.score.toFixed(3)),
      ),
    ),
  );
}

// ------------------------------------------------------------------ models and status

async function loadModels() {
  const errorLine = $("#models-error");
  errorLine.textContent = "";
  const status = $("#status");
  try {
    const ready = await fetch("/health/ready").then((r) => r.json());
    status.textContent = ready.status === "ready" ? "ready" : `${ready.status}: ${ready.detail || ""}`;
    status.dataset.ready = String(ready.status === "ready");
  } catch (exc) {
    status.textContent = "server unreachable";
    status.dataset.ready = "false";
  }
  let models = [];
  try {
    models = (await api("/v1/models")).models;
  } catch (exc) {
    errorLine.textContent = exc.message + (exc.message.startsWith("401") ? " (enter the API key above)" : "");
  }
  $("#model-table tbody").replaceChildren(
    ...models.map((m) =>
      el("tr", {}, el("td", {}, m.name), el("td", {}, m.task), el("td", {}, m.device || ""),
         el("td", {}, m.dtype || ""), el("td", {}, m.routes.join(", "))),
    ),
  );
  const served = new Set(models.flatMap((m) => m.routes));
  for (const select of $$("select.model")) {
    const keep = select.value;
    const names = models.filter((m) => m.routes.includes(select.dataset.route)).map((m) => m.name);
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(keep)) select.value = keep;
  }
  for (const part of $$("[data-route]:not(select)")) {
    part.hidden = !part.dataset.route.split(" ").some((r) => served.has(r));
  }
  document.body.dataset.models = String(models.length);
  if (served.has("faces/list")) inPanel($("#faces-panel"), listFaces);
}

// ------------------------------------------------------------------ text

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

async function runSimilarity() {
  const panel = $("#similarity-panel");
  const out = $("#similarity-score");
  out.textContent = "";
  delete out.dataset.score;
  await inPanel(panel, async () => {
    const body = await api("/v1/embeddings", {
      json: { model: chosenModel("embeddings", panel), inputs: [$("#sentence-a").value, $("#sentence-b").value] },
    });
    const score = cosine(body.data[0].embedding, body.data[1].embedding);
    out.textContent = score.toFixed(4);
    out.dataset.score = String(score);
  });
}

function labelList(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}

async function runZeroShot() {
  const panel = $("#zero-shot-panel");
  await inPanel(panel, async () => {
    const json = {
      model: chosenModel("zero-shot-classification", panel),
      inputs: $("#zero-shot-text").value,
      labels: labelList($("#zero-shot-labels").value),
    };
    const template = $("#zero-shot-template").value.trim();
    if (template) json.hypothesis_template = template;
    const body = await api("/v1/zero-shot-classification", { json });
    bars($("#zero-shot-result"), body.results[0]);
  });
}

async function runTextClassification() {
  const panel = $("#text-classification-panel");
  await inPanel(panel, async () => {
    const body = await api("/v1/text-classification", {
      json: { model: chosenModel("text-classification", panel), inputs: $("#text-classification-text").value },
    });
    bars($("#text-classification-result"), body.results[0].labels);
  });
}

async function runTokenClassification() {
  const panel = $("#token-classification-panel");
  await inPanel(panel, async () => {
    const text = $("#token-classification-text").value;
    const body = await api("/v1/token-classification", {
      json: { model: chosenModel("token-classification", panel), inputs: text },
    });
    const out = $("#token-classification-result");
    const parts = [];
    let at = 0;
    for (const e of body.results[0].entities) {
      parts.push(text.slice(at, e.start));
      parts.push(el("mark", { title: `${e.label} ${e.score.toFixed(3)}` }, text.slice(e.start, e.end),
                    el("sub", {}, e.label)));
      at = e.end;
    }
    parts.push(text.slice(at));
    out.replaceChildren(...parts);
  });
}

// ------------------------------------------------------------------ image

let imageFile = null;

function served(route) {
  return !!$(`select.model[data-route="${route}"]`) && $(`select.model[data-route="${route}"]`).options.length > 0;
}

/** The photo scaled into the canvas; returns the scale (canvas px per image px) and draws nothing else. */
async function drawPhoto(canvas, file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, 720 / bitmap.width, 540 / bitmap.height);
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return bitmap;
}

function drawFaces(canvas, result) {
  const ctx = canvas.getContext("2d");
  const sx = canvas.width / result.width, sy = canvas.height / result.height;
  ctx.lineWidth = 2;
  ctx.font = "12px system-ui, sans-serif";
  for (const face of result.faces) {
    const b = face.box;
    ctx.strokeStyle = "#00e676";
    ctx.strokeRect(b.x_min * sx, b.y_min * sy, (b.x_max - b.x_min) * sx, (b.y_max - b.y_min) * sy);
    ctx.fillStyle = "#00e676";
    ctx.fillText(face.confidence.toFixed(3), b.x_min * sx, Math.max(10, b.y_min * sy - 4));
    ctx.fillStyle = "#ff1744";
    for (const [x, y] of Object.values(face.landmarks || {})) {
      ctx.beginPath();
      ctx.arc(x * sx, y * sy, 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

async function runImage() {
  const panel = $("#image-panel");
  const canvas = $("#face-canvas");
  const file = imageFile;
  if (!file) return;
  canvas.dataset.state = "running";
  canvas.dataset.faces = "";
  await inPanel(panel, async () => {
    await drawPhoto(canvas, file);
    const jobs = [];
    if (served("image-classification")) {
      jobs.push(
        api("/v1/image-classification", {
          form: formWith("image", file, { model: chosenModel("image-classification"), top_k: 5 }),
        }).then((body) => bars($("#image-labels"), body.results[0])),
      );
    }
    if (served("face-detection")) {
      jobs.push(
        api("/v1/face-detection", { form: formWith("image", file, { model: chosenModel("face-detection") }) }).then(
          (body) => {
            const result = body.results[0];
            drawFaces(canvas, result);
            canvas.dataset.faces = String(result.faces.length);
            $("#face-summary").textContent =
              `${result.faces.length} face(s) in ${result.width}×${result.height} px` +
              (result.faces.length ? `; confidences ${result.faces.map((f) => f.confidence.toFixed(3)).join(", ")}` : "");
          },
        ),
      );
    }
    if (served("image-embeddings")) {
      jobs.push(
        api("/v1/image-embeddings", { form: formWith("image", file, { model: chosenModel("image-embeddings") }) }).then(
          (body) => {
            const v = body.data[0].embedding;
            $("#image-embedding").textContent = `${body.dim} dims: [${v.slice(0, 6).map((x) => x.toFixed(3)).join(", ")}, …]`;
          },
        ),
      );
    }
    if (served("zero-shot-image-classification")) jobs.push(zeroShotImage());
    const outcomes = await Promise.allSettled(jobs);
    const failed = outcomes.filter((o) => o.status === "rejected").map((o) => o.reason.message);
    if (failed.length) throw new Error(failed.join("\n"));
  });
  canvas.dataset.state = panel.dataset.state;
}

async function zeroShotImage() {
  if (!imageFile) throw new Error("choose an image first");
  const body = await api("/v1/zero-shot-image-classification", {
    form: formWith("image", imageFile, {
      model: chosenModel("zero-shot-image-classification"),
      labels: JSON.stringify(labelList($("#zero-shot-image-labels").value)),
    }),
  });
  bars($("#zero-shot-image-result"), body.results[0]);
}

// ------------------------------------------------------------------ objects, known faces, text

const COLORS = ["#00e676", "#ff9100", "#2979ff", "#ff1744", "#d500f9", "#00b8d4", "#ffd600"];
const chosenFiles = {}; // panel -> the File last picked in it

function colorFor(label) {
  let h = 0;
  for (const c of label) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

/** A box [x1, y1, x2, y2] in image px on ``canvas`` (scaled by sx, sy), with a caption above it. */
function drawBox(canvas, sx, sy, [x1, y1, x2, y2], color, caption) {
  const ctx = canvas.getContext("2d");
  ctx.lineWidth = 2;
  ctx.strokeStyle = color;
  ctx.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
  ctx.font = "13px system-ui, sans-serif";
  const top = Math.max(0, y1 * sy - 16);
  ctx.fillStyle = color;
  ctx.fillRect(x1 * sx - 1, top, ctx.measureText(caption).width + 6, 16);
  ctx.fillStyle = "#000";
  ctx.fillText(caption, x1 * sx + 2, top + 12);
}

function chosenFile(panel) {
  const file = chosenFiles[panel];
  if (!file) throw new Error("choose an image first");
  return file;
}

async function runDetection() {
  const panel = $("#detection-panel");
  const canvas = $("#detection-canvas");
  canvas.dataset.state = "running";
  canvas.dataset.objects = "";
  await inPanel(panel, async () => {
    const file = chosenFile("detection");
    await drawPhoto(canvas, file);
    const options = {
      model: chosenModel("object-detection", panel),
      min_confidence: $("#detection-min-confidence").value.trim(),
    };
    const labels = labelList($("#detection-labels").value);
    if (labels.length) options.labels = JSON.stringify(labels);
    const result = (await api("/v1/object-detection", { form: formWith("image", file, options) })).results[0];
    const sx = canvas.width / result.width, sy = canvas.height / result.height;
    const corners = (o) => [o.box.x_min, o.box.y_min, o.box.x_max, o.box.y_max];
    for (const o of result.objects) drawBox(canvas, sx, sy, corners(o), colorFor(o.label), `${o.label} ${o.score.toFixed(2)}`);
    $("#detection-list").replaceChildren(
      ...result.objects.map((o) => el("li", {}, `${o.label} ${o.score.toFixed(3)} [${corners(o).join(", ")}]`)),
    );
    canvas.dataset.labels = result.objects.map((o) => o.label).join(",");
    canvas.dataset.objects = String(result.objects.length);
  });
  canvas.dataset.state = panel.dataset.state;
}

async function listFaces() {
  const panel = $("#faces-panel");
  const body = await api("/v1/faces/list", { json: { model: chosenModel("faces/recognize", panel) } });
  const list = $("#faces-users");
  list.replaceChildren(
    ...body.users.map((u) => {
      const forget = el("button", { type: "button", title: `delete ${u.userid}'s faces` }, "delete");
      forget.addEventListener("click", () => inPanel(panel, () => deleteFace(u.userid)));
      return el("li", { "data-userid": u.userid }, `${u.userid} (${u.descriptors})`, forget);
    }),
  );
  list.dataset.users = String(body.users.length);
}

async function deleteFace(userid) {
  const panel = $("#faces-panel");
  await api("/v1/faces/delete", { json: { model: chosenModel("faces/recognize", panel), userid } });
  $("#faces-summary").textContent = `deleted ${userid}`;
  await listFaces();
}

async function registerFace() {
  const panel = $("#faces-panel");
  const summary = $("#faces-summary");
  delete summary.dataset.registered;
  await inPanel(panel, async () => {
    const file = chosenFile("faces");
    const userid = $("#faces-userid").value.trim();
    if (!userid) throw new Error("enter the userid to register this face under");
    await drawPhoto($("#faces-canvas"), file);
    const body = await api("/v1/faces/register", {
      form: formWith("image", file, { model: chosenModel("faces/recognize", panel), userid }),
    });
    summary.textContent = `registered ${body.registered} face(s) as ${body.userid}` +
      (body.notes.length ? ` (${body.notes.join("; ")})` : "");
    summary.dataset.registered = String(body.userid);
    await listFaces();
  });
}

async function recognizeFaces() {
  const panel = $("#faces-panel");
  const canvas = $("#faces-canvas");
  canvas.dataset.state = "running";
  canvas.dataset.faces = "";
  canvas.dataset.userids = "";
  await inPanel(panel, async () => {
    const file = chosenFile("faces");
    await drawPhoto(canvas, file);
    const body = await api("/v1/faces/recognize", {
      form: formWith("image", file, { model: chosenModel("faces/recognize", panel) }),
    });
    const result = body.results[0];
    const sx = canvas.width / result.width, sy = canvas.height / result.height;
    for (const f of result.faces) {
      const known = f.userid !== "unknown";
      drawBox(canvas, sx, sy, f.box, known ? "#00e676" : "#ff9100", known ? `${f.userid} ${f.confidence.toFixed(2)}` : "unknown");
    }
    $("#faces-summary").textContent = `${result.faces.length} face(s): ` +
      (result.faces.map((f) => f.userid).join(", ") || "none");
    canvas.dataset.userids = result.faces.map((f) => f.userid).join(",");
    canvas.dataset.faces = String(result.faces.length);
  });
  canvas.dataset.state = panel.dataset.state;
}

async function runOcr() {
  const panel = $("#ocr-panel");
  const canvas = $("#ocr-canvas");
  const list = $("#ocr-lines");
  canvas.dataset.state = "running";
  canvas.dataset.lines = "";
  await inPanel(panel, async () => {
    const file = chosenFile("ocr");
    await drawPhoto(canvas, file);
    const body = await api("/v1/ocr", { form: formWith("image", file, { model: chosenModel("ocr", panel) }) });
    const result = body.results[0];
    const sx = canvas.width / result.width, sy = canvas.height / result.height;
    const ctx = canvas.getContext("2d");
    ctx.lineWidth = 2;
    ctx.font = "12px system-ui, sans-serif";
    result.lines.forEach((line, i) => {
      ctx.strokeStyle = ctx.fillStyle = COLORS[i % COLORS.length];
      ctx.beginPath();
      line.box.forEach(([x, y], k) => (k ? ctx.lineTo(x * sx, y * sy) : ctx.moveTo(x * sx, y * sy)));
      ctx.closePath();
      ctx.stroke();
      ctx.fillText(String(i + 1), line.box[0][0] * sx, Math.max(10, line.box[0][1] * sy - 3));
    });
    list.replaceChildren(
      ...result.lines.map((line) =>
        el("li", { title: `score ${line.score.toFixed(3)}` }, el("span", { class: "text" }, line.text),
           el("span", { class: "num" }, ` ${line.score.toFixed(2)}`)),
      ),
    );
    canvas.dataset.lines = String(result.lines.length);
  });
  canvas.dataset.state = panel.dataset.state;
}

// ------------------------------------------------------------------ audio and video

function timeline(container, duration, segments) {
  container.replaceChildren(
    ...segments.map((s) =>
      el("div", {
        class: "segment",
        title: `${s.start_s.toFixed(2)}–${s.end_s.toFixed(2)} s`,
        style: { left: `${(100 * s.start_s) / duration}%`, width: `${(100 * (s.end_s - s.start_s)) / duration}%` },
      }),
    ),
  );
  container.dataset.segments = String(segments.length);
}

async function runAudio(file) {
  const panel = $("#audio-panel");
  const player = $("#audio-player");
  player.src = URL.createObjectURL(file);
  player.hidden = false;
  await inPanel(panel, async () => {
    const body = await api("/v1/voice-activity", {
      form: formWith("audio", file, { model: chosenModel("voice-activity", panel) }),
    });
    timeline($("#audio-timeline"), body.duration_s, body.segments);
    $("#audio-summary").textContent =
      `${body.segments.length} speech segment(s) in ${body.duration_s.toFixed(2)} s; speech ratio ${body.speech_ratio.toFixed(2)}`;
  });
}

async function runVideo(file) {
  const panel = $("#video-panel");
  const player = $("#video-player");
  player.src = URL.createObjectURL(file);
  player.hidden = false;
  await inPanel(panel, async () => {
    const body = await api("/v1/video", {
      form: formWith("video", file, {
        every_seconds: $("#video-every").value,
        max_frames: $("#video-max-frames").value,
      }),
    });
    const v = body.video;
    $("#video-summary").textContent =
      `${v.duration_s.toFixed(2)} s, ${v.width}×${v.height}, ${v.frames_sampled} frames sampled (${v.sampling}); ` +
      `models ${body.models.join(", ")}` +
      (body.aggregate.labels && body.aggregate.labels.length ? `; overall: ${body.aggregate.labels[0].label}` : "");
    const track = $("#video-timeline");
    const speech = body.voice_activity ? body.voice_activity.segments : [];
    timeline(track, v.duration_s, speech);
    track.append(
      ...body.frames.map((f) =>
        el("div", { class: "tick", title: `${f.time_s} s`, style: { left: `${(100 * f.time_s) / v.duration_s}%` } }),
      ),
    );
    const rows = body.frames.map((f) => {
      const labels = (f.labels || []).slice(0, 3).map((l) => `${l.label} ${l.score.toFixed(2)}`).join(", ");
      const row = el("tr", {}, el("td", {}, f.time_s.toFixed(2)), el("td", {}, labels),
                     el("td", {}, f.faces ? String(f.faces.length) : "–"));
      row.addEventListener("click", () => { player.currentTime = f.time_s; });
      return row;
    });
    $("#video-frames tbody").replaceChildren(...rows);
    $("#video-frames").dataset.frames = String(rows.length);
  });
}

// ------------------------------------------------------------------ streams

const STREAM_REFRESH_MS = 2000;
const MAX_STREAM_EVENTS = 50;
let watched = null; // {id, controller}: the stream whose frame and events are shown
let streamFrameUrl = null;

function streamPath(id, tail = "") {
  return `/v1/streams/${encodeURIComponent(id)}${tail}`;
}

async function listStreams() {
  const panel = $("#streams-panel");
  let body;
  try {
    body = await api("/v1/streams");
  } catch (exc) {
    if (exc.message.startsWith("404")) {
      panel.hidden = true; // this server runs no stream manager
      return;
    }
    throw exc;
  }
  panel.hidden = false;
  const table = $("#streams-table");
  $("tbody", table).replaceChildren(
    ...body.streams.map((s) => {
      const view = el("button", { type: "button", class: "stream-view" }, "view");
      view.addEventListener("click", () => watchStream(s.id));
      const remove = el("button", { type: "button", class: "stream-remove" }, "remove");
      remove.addEventListener("click", () => inPanel(panel, () => removeStream(s.id)));
      const st = s.status;
      return el(
        "tr",
        { "data-stream": s.id, "data-state": st.state, "data-watched": String(watched !== null && watched.id === s.id) },
        el("td", {}, s.id),
        el("td", { class: "url" }, s.url), // the API answers without credentials
        el("td", {}, s.tasks ? s.tasks.join(", ") : "default"),
        el("td", {}, st.state),
        el("td", {}, st.last_error || ""),
        el("td", {}, `${st.frames_analysed} / ${st.frames_skipped}`),
        el("td", {}, ...(s.origin === "api" ? [view, remove] : [view])),
      );
    }),
  );
  table.dataset.streams = String(body.streams.length);
  const ids = body.streams.map((s) => s.id);
  if (watched && !ids.includes(watched.id)) unwatch();
  if (!watched && ids.length) watchStream(ids[0]);
}

/** The watched stream's latest annotated frame, fetched with the key (an <img src> cannot send one). */
async function refreshFrame() {
  if (!watched) return;
  const id = watched.id;
  const response = await fetch(streamPath(id, "/snapshot.jpg"), { headers: authHeaders(), cache: "no-store" });
  if (!response.ok || !watched || watched.id !== id) return; // 404 until a frame has been analysed
  const url = URL.createObjectURL(await response.blob());
  const img = $("#stream-view");
  img.onload = () => {
    if (streamFrameUrl && streamFrameUrl !== url) URL.revokeObjectURL(streamFrameUrl);
    streamFrameUrl = url;
    img.dataset.loaded = "true";
  };
  img.src = url;
  img.dataset.stream = id;
  img.hidden = false;
}

function showEvent(event) {
  const list = $("#stream-events");
  const who = event.text || event.userid || "";
  const zone = event.zone ? ` in ${event.zone}` : "";
  const line = `${new Date(event.frame_time * 1000).toLocaleTimeString()} ${event.type} ${event.label} ` +
    `#${event.track_id}${who ? ` "${who}"` : ""} ${event.score.toFixed(2)}${zone}`;
  list.prepend(el("li", { "data-type": event.type, "data-label": event.label }, line));
  while (list.children.length > MAX_STREAM_EVENTS) list.lastElementChild.remove();
  list.dataset.events = String(Number(list.dataset.events) + 1);
}

/** Server-Sent Events read with fetch (the key goes as a header); reconnects while the stream is watched. */
async function readEvents(id, controller) {
  while (!controller.signal.aborted) {
    try {
      const response = await fetch(streamPath(id, "/events"), { headers: authHeaders(), signal: controller.signal });
      if (!response.ok) throw new Error(`events: ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (data) showEvent(JSON.parse(data));
        }
      }
    } catch (exc) {
      if (controller.signal.aborted) return;
      $("#streams-panel > .error").textContent = exc.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

function unwatch() {
  if (watched) watched.controller.abort();
  watched = null;
  const img = $("#stream-view");
  img.hidden = true;
  img.removeAttribute("src");
  img.dataset.stream = "";
  img.dataset.loaded = "";
  $("#stream-watched").textContent = "";
}

function watchStream(id) {
  unwatch();
  watched = { id, controller: new AbortController() };
  $("#stream-watched").textContent = `of ${id}`;
  $("#stream-events").replaceChildren();
  $("#stream-events").dataset.events = "0";
  for (const row of $$("#streams-table tbody tr")) row.dataset.watched = String(row.dataset.stream === id);
  readEvents(id, watched.controller);
  refreshFrame().catch(() => {});
}

async function addStream(e) {
  e.preventDefault();
  const spec = { id: $("#stream-id").value.trim(), url: $("#stream-url").value.trim() };
  const tasks = labelList($("#stream-tasks").value);
  if (tasks.length) spec.tasks = tasks;
  if ($("#stream-fps").value) spec.fps = Number($("#stream-fps").value);
  await api("/v1/streams", { json: spec });
  $("#stream-url").value = ""; // it may hold a password
  await listStreams();
  watchStream(spec.id);
}

async function removeStream(id) {
  await api(streamPath(id), { method: "DELETE" });
  if (watched && watched.id === id) unwatch();
  await listStreams();
}

function startStreams() {
  const panel = $("#streams-panel");
  inPanel(panel, listStreams);
  setInterval(() => {
    if (panel.hidden || panel.dataset.state === "running") return;
    listStreams().then(
      () => ($(":scope > .error", panel).textContent = ""),
      (exc) => ($(":scope > .error", panel).textContent = exc.message),
    );
    refreshFrame().catch(() => {});
  }, STREAM_REFRESH_MS);
}

// ------------------------------------------------------------------ wiring

function init() {
  const key = $("#api-key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, key.value.trim());
    loadModels();
    if (watched) watchStream(watched.id); // the events are read again with the new key
  });
  $("#reload").addEventListener("click", loadModels);
  $("#similarity-run").addEventListener("click", runSimilarity);
  $("#zero-shot-run").addEventListener("click", runZeroShot);
  $("#text-classification-run").addEventListener("click", runTextClassification);
  $("#token-classification-run").addEventListener("click", runTokenClassification);
  $("#zero-shot-image-run").addEventListener("click", () => inPanel($("#image-panel"), zeroShotImage));
  $("#image-input").addEventListener("change", (e) => {
    imageFile = e.target.files[0] || null;
    runImage();
  });
  for (const [panel, run] of [["detection", runDetection], ["ocr", runOcr], ["faces", null]]) {
    $(`#${panel}-input`).addEventListener("change", (e) => {
      chosenFiles[panel] = e.target.files[0] || null;
      if (run && chosenFiles[panel]) run();
      else if (chosenFiles[panel]) {
        const error = $(`#${panel}-panel > .error`);
        drawPhoto($(`#${panel}-canvas`), chosenFiles[panel]).then(
          () => (error.textContent = ""),
          (exc) => (error.textContent = `not an image the browser can show: ${exc.message}`),
        );
      }
    });
  }
  $("#detection-run").addEventListener("click", runDetection);
  $("#faces-register").addEventListener("click", registerFace);
  $("#faces-recognize").addEventListener("click", recognizeFaces);
  $("#faces-list").addEventListener("click", () => inPanel($("#faces-panel"), listFaces));
  $("#audio-input").addEventListener("change", (e) => e.target.files[0] && runAudio(e.target.files[0]));
  $("#video-input").addEventListener("change", (e) => e.target.files[0] && runVideo(e.target.files[0]));
  $("#stream-add").addEventListener("submit", (e) => inPanel($("#streams-panel"), () => addStream(e)));
  loadModels();
  startStreams();
}

document.addEventListener("DOMContentLoaded", init);
