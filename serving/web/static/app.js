// The search page: text, photo and more-like-this queries through the app's /api (app.py).
// Plain JavaScript, no build step, nothing downloaded. Every server text is set with
// textContent (never as HTML). body[data-done] counts finished queries (the browser tests wait
// on it); body[data-busy] is "1" while one runs.
"use strict";

const $ = (id) => document.getElementById(id);
let maxUploadMb = 8;
let done = 0;
const knownTags = new Set();

function showError(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $("message").hidden = true;
  $("message").textContent = "";
}

function finished() {
  done += 1;
  document.body.dataset.done = String(done);
  document.body.dataset.busy = "0";
}

// POST/GET to the app; {ok, data, ms} where ms is the whole round trip seen from the page.
async function call(url, options) {
  const start = performance.now();
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    return {ok: false, ms: performance.now() - start,
            data: {error: "The search page's own server did not answer: is `python -m " +
                          "serving.web` still running?"}};
  }
  let data;
  try {
    data = await response.json();
  } catch (e) {
    data = {error: `The search page answered ${response.status} ${response.statusText}`};
  }
  return {ok: response.ok, data, ms: performance.now() - start};
}

function postJson(url, body) {
  return call(url, {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify(body)});
}

function controls() {
  return {k: $("k").value, tag: $("tag").value.trim()};
}

function fmt(ms) {
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

function score(value) {
  const span = document.createElement("span");
  span.className = "score";
  span.textContent = value.toFixed(3);
  return span;
}

function rememberTags(hits) {
  for (const hit of hits) {
    for (const tag of hit.tags || []) {
      if (!knownTags.has(tag)) {
        knownTags.add(tag);
        const option = document.createElement("option");
        option.value = tag;
        $("known-tags").appendChild(option);
      }
    }
  }
}

function likeButton(hit, gallery) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "like";
  button.textContent = "More like this";
  button.setAttribute("aria-label", `More like ${hit.id}`);
  button.addEventListener("click", () => moreLikeThis(hit.id, gallery));
  return button;
}

function imageTile(hit) {
  const figure = document.createElement("figure");
  figure.className = "hit";
  figure.dataset.id = hit.id;
  figure.dataset.rank = String(hit.rank);
  let picture;
  if (hit.image) {
    picture = document.createElement("img");
    picture.src = hit.image;
    picture.alt = hit.caption || hit.id;
    picture.loading = "lazy";
  } else {
    picture = document.createElement("div");
    picture.className = "noimage";
    picture.textContent = "no image path";
  }
  picture.title = "More like this";
  picture.addEventListener("click", () => moreLikeThis(hit.id, "images"));
  const caption = document.createElement("figcaption");
  caption.append(`#${hit.rank} `, score(hit.score), " ");
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = hit.id;
  caption.append(id);
  if (hit.caption) {  // an image's captions are joined with " | ": the first, all on hover
    caption.append(document.createElement("br"), hit.caption.split(" | ")[0]);
    caption.title = hit.caption;
  }
  if (hit.tags && hit.tags.length) caption.append(document.createElement("br"),
                                                  `tags: ${hit.tags.join(", ")}`);
  figure.append(picture, caption, likeButton(hit, "images"));
  return figure;
}

function showImages(title, result) {
  $("result-title").textContent = title;
  const grid = $("grid");
  grid.replaceChildren(...result.hits.map(imageTile));
  if (!result.hits.length) grid.textContent = "No gallery image matches (check the tag).";
  rememberTags(result.hits);
  $("result-section").hidden = false;
}

function showCaptions(title, result) {
  $("caption-title").textContent = title;
  const list = $("captions");
  list.replaceChildren(...result.hits.map((hit) => {
    const item = document.createElement("li");
    item.className = "caption-hit";
    item.dataset.id = hit.id;
    item.dataset.rank = String(hit.rank);
    if (hit.image) {
      const img = document.createElement("img");
      img.src = hit.image;
      img.alt = "";
      item.append(img);
    }
    const text = document.createElement("span");
    text.className = "caption-text";
    text.textContent = hit.caption || hit.id;
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = ` (${hit.id}) `;
    item.append(score(hit.score), " ", text, id, likeButton(hit, "captions"));
    return item;
  }));
  $("caption-section").hidden = false;
}

function showQuery(text, latency) {
  $("query-line").textContent = text;
  $("words").replaceChildren();
  $("importance-note").textContent = "";
  $("latency").textContent = latency;
  $("query-info").hidden = false;
}

function latencyLine(label, result, ms) {
  return `${label}: ${result.model} v${result.version} ${result.signature}, ` +
         `${fmt(result.elapsed_ms)} at the model server, ${fmt(ms)} in all`;
}

// The sentence, each word shaded by the drop in the top hit's score without it (warm: the word
// supports the match, cool: it works against it), as keras_instance.cli.explain shades it.
function showImportance(answer, ms) {
  const scale = Math.max(0, ...answer.words.map((w) => Math.abs(w.drop)));
  const spans = answer.words.map((w) => {
    const span = document.createElement("span");
    span.className = "word" + (w.note ? " unread" : "");
    span.textContent = w.word;
    span.dataset.drop = String(w.drop);
    const alpha = scale > 0 ? Math.min(Math.abs(w.drop) / scale, 1) : 0;
    const rgb = w.drop >= 0 ? "220, 80, 30" : "40, 100, 220";
    if (!w.note) span.style.background = `rgba(${rgb}, ${alpha.toFixed(2)})`;
    span.title = w.note ? w.note : `score drop without it: ${w.drop >= 0 ? "+" : ""}` +
                                   w.drop.toFixed(4);
    return span;
  });
  const words = $("words");
  words.replaceChildren();
  spans.forEach((span, i) => { if (i) words.append(" "); words.append(span); });
  $("importance-note").textContent =
      `Shading: ${answer.measure} (score ${answer.score.toFixed(3)}); warm supports the ` +
      `match, cool works against it.` + (answer.cut ? ` First ${answer.words.length} words ` +
      `shown.` : "");
  $("latency").textContent += ` · word importance: ${answer.batch} sentences in one ` +
      `text_encoder call + embedding_of, ${fmt(answer.elapsed_ms)} at the model server, ` +
      `${fmt(ms)} in all`;
}

function begin() {
  clearError();
  document.body.dataset.busy = "1";
}

async function textSearch(event) {
  event.preventDefault();
  const query = $("query").value.trim();
  begin();
  if (!query) {
    showError("Type a sentence to search for: the search box is empty.");
    finished();
    return;
  }
  const {k, tag} = controls();
  const answer = await call("/api/text", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({query, k, tag})});
  if (!answer.ok) {
    showError(answer.data.error);
    finished();
    return;
  }
  const result = answer.data;
  $("caption-section").hidden = true;
  showImages(`Images for “${query}”` + (tag ? ` tagged ${tag}` : ""), result);
  showQuery(`Sentence: ${query}`, latencyLine("search", result, answer.ms));
  if (result.hits.length) {
    const why = await postJson("/api/explain", {query, top_id: result.hits[0].id});
    if (why.ok) showImportance(why.data, why.ms);
    else $("importance-note").textContent = `No word importance: ${why.data.error}`;
  }
  finished();
}

async function imageSearch(file) {
  begin();
  if (!file) {
    finished();
    return;
  }
  if (file.size === 0) {
    showError(`${file.name} is empty (zero bytes): choose a photo.`);
    finished();
    return;
  }
  if (file.size > maxUploadMb * 1024 * 1024) {
    showError(`${file.name} is larger than the ${maxUploadMb} MB limit: choose a smaller photo.`);
    finished();
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  const {k, tag} = controls();
  form.append("k", k);
  form.append("tag", tag);
  const answer = await call("/api/image", {method: "POST", body: form});
  if (!answer.ok) {
    showError(answer.data.error);
    finished();
    return;
  }
  const {captions, similar} = answer.data;
  showCaptions(`Captions for ${file.name}`, captions);
  showImages(`Images like ${file.name} (by its image embedding)`, similar);
  showQuery(`Photo: ${file.name}`,
            `${latencyLine("captions", captions, answer.ms)} · similar images: image_encoder ` +
            `${fmt(similar.embed_ms)} + ${similar.model} ${fmt(similar.elapsed_ms)}`);
  finished();
}

async function moreLikeThis(id, gallery) {
  begin();
  const {k, tag} = controls();
  const answer = await postJson("/api/like", {id, gallery, k, tag});
  if (!answer.ok) {
    showError(answer.data.error);
    finished();
    return;
  }
  const result = answer.data;
  if (gallery === "images") {
    $("caption-section").hidden = true;
    showImages(`More like ${id}`, result);
  } else {
    $("result-section").hidden = true;
    showCaptions(`Captions like ${id}`, result);
  }
  showQuery(`More like ${id}`, latencyLine("more like this", result, answer.ms));
  finished();
}

async function serverStatus() {
  const answer = await call("/api/status");
  const line = $("server-status");
  if (!answer.ok) {
    line.textContent = answer.data.error;
    line.className = "down";
    return;
  }
  maxUploadMb = answer.data.max_upload_mb;
  const parts = [];
  let down = false;
  for (const [gallery, model] of Object.entries(answer.data.models)) {
    if (model.error) {
      down = true;
      parts.push(`${model.model}: ${model.error}`);
    } else {
      const info = model.info;
      parts.push(`${model.model}: ${info.size} ${gallery} (${info.index}, k up to ${info.max_k})`);
    }
  }
  line.textContent = `Model server ${answer.data.server} · ${parts.join(" · ")}`;
  line.className = down ? "down" : "";
}

function setUp() {
  document.body.dataset.done = "0";
  document.body.dataset.busy = "0";
  $("search-form").addEventListener("submit", textSearch);
  $("photo").addEventListener("change", () => {
    const file = $("photo").files[0];
    imageSearch(file).finally(() => { $("photo").value = ""; });
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (!file) {
      showError("Drop a photo file (JPEG, PNG, GIF, BMP or WebP), not text or a link.");
      return;
    }
    imageSearch(file);
  });
  // A photo dropped outside the zone would make the browser leave the page: take it here too.
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    if (!zone.contains(e.target)) {
      e.preventDefault();
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) imageSearch(file);
    }
  });
  serverStatus();
}

document.addEventListener("DOMContentLoaded", setUp);
