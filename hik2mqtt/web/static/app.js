// hik2mqtt page: plain JavaScript, no build step. Every camera-supplied text goes into
// the page through textContent or attributes, never as HTML.
"use strict";

const state = { csrf: null, readOnly: true, cameras: [], camerasText: "", cursor: null, lists: null };
const MAX_LIVE = 50;

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function say(message, isError) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", Boolean(isError));
}

async function api(method, url, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  }
  const response = await fetch(url, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { window.location.assign("/login"); throw new Error("log in"); }
  let doc = null;
  try { doc = await response.json(); } catch (e) { doc = null; }
  if (!response.ok) throw new Error((doc && doc.error) || (doc && doc.reason) || response.statusText);
  return doc;
}

// -- tabs -------------------------------------------------------------------------------

function showTab(name) {
  say("");
  for (const tab of document.querySelectorAll(".tab")) {
    const on = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    $(tab.dataset.tab).hidden = !on;
  }
  if (name === "lists" && state.lists === null) loadLists();
  if (name === "history" && $("results").childElementCount === 0) search(false);
}

// -- reads ------------------------------------------------------------------------------

function when(iso) {
  const date = new Date(iso);
  return isNaN(date) ? String(iso || "") : date.toLocaleString();
}

// A read arrives live before its pictures do (they follow it from the camera): its
// pictures are asked for again a few times before "no picture" is shown.
const PICTURE_RETRIES = [500, 1000, 2000];

function readItem(read, live = false) {
  const item = $("read-template").content.firstElementChild.cloneNode(true);
  item.dataset.id = String(read.id);
  const pictures = item.querySelector(".pictures");
  const kinds = Object.keys(read.pictures || {});
  kinds.sort((a, b) => (a === "plate" ? -1 : b === "plate" ? 1 : a.localeCompare(b)));
  for (const kind of kinds) {
    const img = el("img", {
      src: read.pictures[kind], alt: kind + " picture of " + (read.plate || "an unread plate"),
      loading: "lazy", className: "picture " + (kind === "plate" ? "plate-picture" : "vehicle-picture"),
    });
    let tries = 0;
    img.addEventListener("error", () => {
      if (live && tries < PICTURE_RETRIES.length) {
        const delay = PICTURE_RETRIES[tries];
        tries += 1;
        setTimeout(() => { img.src = read.pictures[kind] + "?try=" + tries; }, delay);
        return;
      }
      img.replaceWith(el("span", { className: "nopicture", text: "no " + kind + " picture kept" }));
    });
    pictures.append(img);
  }
  if (kinds.length === 0) pictures.append(el("span", { className: "nopicture", text: "no picture" }));
  item.querySelector(".plate").textContent = read.plate || "not read";
  const meta = [read.camera, when(read.received)];
  if (read.confidence !== null && read.confidence !== undefined) meta.push("confidence " + read.confidence);
  if (read.direction) meta.push(read.direction);
  item.querySelector(".meta").textContent = meta.join(" · ");
  const flags = item.querySelector(".flags");
  if (read.match) flags.append(el("span", { className: "badge match", text: "on list " + read.match }));
  if (read.duplicate) flags.append(el("span", { className: "badge warn", text: "duplicate" }));
  if (read.retransmitted) flags.append(el("span", { className: "badge warn", text: "retransmitted" }));
  const gate = item.querySelector(".gate");
  if (read.gate) {
    gate.append(el("span", { className: "badge " + (read.gate.open ? "open" : "shut"), text: read.gate.open ? "gate opened" : "gate stayed shut" }));
    gate.append(document.createTextNode(" " + (read.gate.reason || "")));
  }
  return item;
}

function addLive(read) {
  const list = $("reads");
  list.prepend(readItem(read, true));
  while (list.childElementCount > MAX_LIVE) list.lastElementChild.remove();
  $("reads-empty").hidden = true;
}

// -- cameras ----------------------------------------------------------------------------

function renderCameras(cameras) {
  const text = JSON.stringify(cameras);
  if (text === state.camerasText) return;  // unchanged: keep the buttons (and the focus)
  state.camerasText = text;
  state.cameras = cameras;
  const box = $("cameras");
  box.replaceChildren();
  const select = document.querySelector("#search select[name=camera]");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "any" }));
  for (const cam of cameras) {
    select.append(el("option", { value: cam.name, text: cam.display_name }));
    const card = el("article", { className: "camera", "aria-label": "Camera " + cam.display_name });
    card.append(el("h3", { text: cam.display_name }));
    card.append(el("p", { className: "camstatus " + (cam.online ? "online" : "offline"), text: (cam.online ? "online" : "offline") + (cam.status && cam.status !== "online" && cam.status !== "offline" ? " – " + cam.status : "") + " · " + cam.mode }));
    const buttons = el("div", { className: "buttons" });
    buttons.append(commandButton("Read now", cam, "trigger", null, ""));
    for (const n of cam.outputs || []) buttons.append(commandButton("Pulse output " + n, cam, "outputs/" + n, n, "1"));
    if (cam.barrier) buttons.append(commandButton("Open barrier", cam, "barrier", null, "open"));
    card.append(buttons);
    box.append(card);
  }
  select.value = chosen;
}

function commandButton(label, cam, path, output, value) {
  const button = el("button", { type: "button", text: label, disabled: state.readOnly, title: state.readOnly ? "read-only: the page has no password" : null });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const body = path === "trigger" ? undefined : { value };
      const outcome = await api("POST", "/api/cameras/" + encodeURIComponent(cam.name) + "/" + path, body);
      say(label + " (" + cam.display_name + "): " + (outcome.accepted ? "sent" : "refused: " + outcome.reason));
    } catch (err) {
      say(label + " (" + cam.display_name + "): " + err.message, true);
    } finally {
      button.disabled = state.readOnly;
    }
  });
  return button;
}

// -- live feed --------------------------------------------------------------------------

let source = null;

function connect() {
  if (source) source.close();
  source = new EventSource("/api/live");
  source.addEventListener("open", () => { $("feed").textContent = "live"; $("feed").className = "badge open"; });
  source.addEventListener("error", () => { $("feed").textContent = "reconnecting"; $("feed").className = "badge warn"; });
  source.addEventListener("read", (event) => addLive(JSON.parse(event.data)));
  source.addEventListener("cameras", (event) => renderCameras(JSON.parse(event.data)));
}

// -- history ----------------------------------------------------------------------------

function searchParams() {
  const form = $("search");
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) {
    if (value === "") continue;
    if (key === "since" || key === "until") params.set(key, new Date(value).toISOString());
    else params.set(key, value);
  }
  return params;
}

async function search(more) {
  const params = searchParams();
  $("csv").href = "/api/reads.csv?" + params.toString();
  if (more && state.cursor) params.set("cursor", state.cursor);
  params.set("limit", "25");
  try {
    const page = await api("GET", "/api/reads?" + params.toString());
    const list = $("results");
    if (!more) list.replaceChildren();
    for (const read of page.reads) list.append(readItem(read));
    state.cursor = page.next_cursor;
    $("more").hidden = !page.next_cursor;
    $("results-empty").hidden = list.childElementCount > 0;
    say(more ? "" : page.reads.length + (page.next_cursor ? "+" : "") + " reads found.");
  } catch (err) {
    say("Search: " + err.message, true);
  }
}

async function erase() {
  const plate = $("search").elements.plate.value.trim();
  if (!plate) { say("Type the plate to erase in the Plate field first.", true); return; }
  if (!window.confirm("Erase every read of " + plate + " and its pictures? This cannot be undone.")) return;
  try {
    const done = await api("DELETE", "/api/reads?plate=" + encodeURIComponent(plate));
    say("Erased " + done.reads + " reads and " + done.pictures + " pictures of " + plate + ".");
    search(false);
  } catch (err) {
    say("Erase: " + err.message, true);
  }
}

// -- lists ------------------------------------------------------------------------------

async function loadLists() {
  try {
    state.lists = await api("GET", "/api/lists");
  } catch (err) {
    say("Lists: " + err.message, true);
    return;
  }
  $("lists-file").textContent = state.lists.file
    ? "File " + state.lists.file + " (" + state.lists.format + "). Saving rewrites it; the bridge reloads it at once."
    : "No lists file is configured (HIK2MQTT_LISTS_FILE).";
  const body = $("lists-body");
  body.replaceChildren();
  for (const list of state.lists.lists) body.append(listEditor(list));
  $("save-lists").disabled = state.readOnly || !state.lists.file;
  $("add-list").disabled = state.readOnly || !state.lists.file;
}

let uid = 0;
function field(labelText, value, className) {
  const id = "f" + (++uid);
  const input = el("input", { id, type: "text", value: value || "", className, maxlength: "64", disabled: state.readOnly });
  return el("span", { className: "field" }, el("label", { for: id, text: labelText }), input);
}

function entryRow(entry) {
  const row = el("li", { className: "entry" });
  row.append(field("Plate", entry.plate, "plate-input"), field("Name", entry.name, "name-input"), field("Notes", entry.notes, "notes-input"));
  row.append(field("Valid from", entry.valid_from, "from-input"), field("Valid until", entry.valid_until, "until-input"));
  if (entry.state && entry.state !== "valid") {
    row.classList.add("lapsed");
    row.append(el("span", { className: "badge lapsed-badge", text: entry.state }));
  }
  const remove = el("button", { type: "button", className: "danger", text: "Remove", disabled: state.readOnly });
  remove.addEventListener("click", () => row.remove());
  row.append(remove);
  return row;
}

function listEditor(list) {
  const box = el("fieldset", { className: "list" });
  box.append(el("legend", { text: "List " + list.name }));
  box.append(field("List name", list.name, "list-name"));
  const tol = field("Tolerance (characters off)", String(list.tolerance || 0), "list-tolerance");
  tol.querySelector("input").setAttribute("inputmode", "numeric");
  box.append(tol);
  const entries = el("ul", { className: "entries" });
  for (const entry of list.plates) entries.append(entryRow(entry));
  box.append(entries);
  const add = el("button", { type: "button", text: "Add a plate", disabled: state.readOnly });
  add.addEventListener("click", () => { const row = entryRow({}); entries.append(row); row.querySelector("input").focus(); });
  box.append(add);
  return box;
}

function collectLists() {
  const lists = [];
  for (const box of document.querySelectorAll("#lists-body fieldset.list")) {
    const plates = [];
    for (const row of box.querySelectorAll("li.entry")) {
      const plate = row.querySelector(".plate-input").value.trim();
      if (!plate) continue;
      plates.push({
        plate,
        name: row.querySelector(".name-input").value.trim() || null,
        notes: row.querySelector(".notes-input").value.trim() || null,
        valid_from: row.querySelector(".from-input").value.trim() || null,
        valid_until: row.querySelector(".until-input").value.trim() || null,
      });
    }
    lists.push({
      name: box.querySelector(".list-name").value.trim(),
      tolerance: parseInt(box.querySelector(".list-tolerance").value, 10) || 0,
      plates,
    });
  }
  return lists;
}

async function saveLists(event) {
  event.preventDefault();
  try {
    const done = await api("PUT", "/api/lists", { lists: collectLists(), version: state.lists.version });
    say(done.reloaded ? "Lists saved; the bridge uses them now." : "Lists saved.");
    state.lists = null;
    loadLists();
  } catch (err) {
    say("Lists: " + err.message, true);
  }
}

// -- start ------------------------------------------------------------------------------

async function start() {
  const tabs = [...document.querySelectorAll(".tab")];
  tabs.forEach((tab, i) => {
    tab.tabIndex = i === 0 ? 0 : -1;
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
    tab.addEventListener("keydown", (event) => {  // arrow keys move between tabs (ARIA tabs)
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      showTab(next.dataset.tab);
    });
  });
  $("search").addEventListener("submit", (event) => { event.preventDefault(); search(false); });
  $("more").addEventListener("click", () => search(true));
  $("erase").addEventListener("click", erase);
  $("lists-form").addEventListener("submit", saveLists);
  $("add-list").addEventListener("click", () => {
    $("lists-body").append(listEditor({ name: "new", tolerance: 0, plates: [] }));
  });
  try {
    const session = await api("GET", "/api/session");
    state.csrf = session.csrf;
    state.readOnly = session.read_only;
    $("mode").textContent = session.read_only ? "read-only (no password set)" : "logged in";
    $("logout").hidden = session.auth !== "session";
    $("erase").disabled = session.read_only;
  } catch (err) {
    say(err.message, true);
    return;
  }
  renderCameras(await api("GET", "/api/cameras"));
  connect();
}

// A page kept in the back/forward cache must not hold its feed open: browsers allow six
// connections per server, and each kept feed would take one.
window.addEventListener("pagehide", () => { if (source) { source.close(); source = null; } });
window.addEventListener("pageshow", (event) => { if (event.persisted) connect(); });

document.addEventListener("DOMContentLoaded", start);
