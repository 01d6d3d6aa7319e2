// 同心 resident page: raise a need, follow it with the tracking code, rate the result (回访).
// Every call goes to intake's public API on this page's own origin, without a token.
"use strict";

const POLL_MS = 5000;
const ID_RE = /^[A-Z]{1,8}-\d{8}-\d{6}$/;
const CODE_RE = /^[A-Za-z0-9_-]{8,64}$/;
const STATUS_NAMES = {
  submitted: "已受理",
  routed: "已派单",
  acknowledged: "已接单",
  in_progress: "办理中",
  returned: "重新派单中",
  resolved: "已办结待评价",
  reopened: "重新办理中",
  closed: "已办结",
  withdrawn: "已撤回",
};
const RATING_NAMES = LABELS.rating; // labels.js, from tongxin.contracts.enums
// a field's name in error messages
const FIELD_NAMES = {
  category: "诉求类别",
  title: "一句话概括",
  description: "具体情况",
  community: "所在社区",
  compound: "小区",
  address: "详细地址",
  location: "当前位置",
  urgency: "紧急程度",
  "submitter.name": "称呼",
  "submitter.phone": "手机号码",
};

const $ = (sel) => document.querySelector(sel);

const state = {
  categories: [],
  categoryByCode: {},
  communities: [],
  compoundById: {},
  attempt: null, // {body, key}: a retry of the same body reuses its Idempotency-Key
  receipt: null, // {id, tracking_code, duplicate_of} of the last submission
  track: null, // {id, code} being followed
  pollTimer: null,
  retryTimer: null,
};

// --- HTTP ------------------------------------------------------------------------------------

class NetworkError extends Error {}

// {status, data, retryAfter}; NetworkError when the server could not be reached
async function api(method, path, body, headers = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { accept: "application/json", ...(body ? { "content-type": "application/json" } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new NetworkError(String(e));
  }
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    data = null;
  }
  return { status: res.status, data, retryAfter: res.headers.get("retry-after") };
}

function errorCode(r) {
  return (r.data && r.data.error && r.data.error.code) || "";
}

// a readable zh-CN sentence for an answer that is not a success
function problemText(r) {
  const code = errorCode(r);
  if (r.status === 429) return `提交过于频繁，请 ${retrySeconds(r)} 秒后再试。`;
  if (r.status === 413) return "内容太长，请精简后再提交。";
  if (r.status === 404) return "未找到该诉求，或查询码不正确。请核对后重试。";
  if (r.status === 503 || r.status === 502 || r.status === 504) return "系统繁忙，请稍后再试。已填写的内容都还在。";
  if (code === "feedback_already_given") return "本次办理结果已经评价过了。";
  if (code === "not_resolved") return "诉求办结后才能评价。";
  if (code === "feedback_window_closed") return "评价时间已过。";
  if (code === "idempotency_key_reused") return "请重新提交一次。";
  return "提交未成功，请稍后再试。已填写的内容都还在。";
}

function retrySeconds(r) {
  const n = parseInt(r.retryAfter || "", 10);
  return Number.isFinite(n) && n > 0 ? n : 60;
}

const NETWORK_TEXT = "网络连接失败，请检查网络后再试一次。已填写的内容都还在。";

// --- small DOM helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function show(node, text) {
  node.textContent = text;
  node.hidden = !text;
}

function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleString("zh-CN", {
    timeZone: "Asia/Shanghai",
    month: "long",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  });
}

// --- routing between the three views -------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function showView(name) {
  for (const v of ["submit", "done", "track"]) $(`#${v}-view`).hidden = v !== name;
  for (const a of document.querySelectorAll(".nav a")) {
    if (a.dataset.nav === (name === "done" ? "submit" : name)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function route() {
  const { path, params } = parseHash();
  stopPolling();
  if (path === "/track") {
    showView("track");
    const id = params.get("id");
    const code = params.get("code");
    if (id && code) {
      $("#track-id").value = id;
      $("#track-code").value = code;
      startTracking(id, code);
    }
    return;
  }
  if (path === "/done" && state.receipt) {
    showView("done");
    return;
  }
  showView("submit");
}

// --- the catalogue and the registry ------------------------------------------------------------

async function loadReference() {
  try {
    const [cats, comps] = await Promise.all([api("GET", "/v1/categories"), api("GET", "/v1/compounds")]);
    if (cats.status !== 200 || comps.status !== 200) throw new NetworkError("reference");
    state.categories = cats.data;
    state.categoryByCode = Object.fromEntries(cats.data.map((c) => [c.code, c]));
    state.communities = comps.data;
    for (const community of comps.data) {
      for (const c of community.compounds) state.compoundById[c.id] = { ...c, community };
    }
    fillCategories();
    fillCommunities();
    fillCompounds("");
    show($("#form-alert"), "");
  } catch (e) {
    show($("#form-alert"), "类别和小区列表加载失败，请检查网络后刷新页面。");
  }
}

function fillCategories() {
  const select = $("#category");
  const current = select.value;
  select.replaceChildren(el("option", { value: "", text: "请选择类别" }));
  for (const c of state.categories) select.append(el("option", { value: c.code, text: c.name }));
  select.value = current;
}

function fillCommunities() {
  const select = $("#community");
  const current = select.value;
  select.replaceChildren(el("option", { value: "", text: "请选择社区" }));
  for (const c of state.communities) select.append(el("option", { value: c.id, text: c.name }));
  select.value = current;
}

// the compound list, narrowed to names containing the search text (kept: the chosen one)
function fillCompounds(filter) {
  const select = $("#compound");
  const current = select.value;
  const needle = filter.trim();
  select.replaceChildren(el("option", { value: "", text: needle ? "请选择匹配的小区" : "请选择小区（选填）" }));
  let shown = 0;
  for (const community of state.communities) {
    const group = el("optgroup", { label: community.name });
    for (const c of community.compounds) {
      const hit = !needle || c.name.includes(needle) || community.name.includes(needle);
      if (hit || c.id === current) {
        group.append(el("option", { value: c.id, text: c.name }));
        shown += 1;
      }
    }
    if (group.children.length) select.append(group);
  }
  select.value = current;
  if (needle && shown === 0) select.replaceChildren(el("option", { value: "", text: "没有匹配的小区" }));
}

function onCompoundChange() {
  const c = state.compoundById[$("#compound").value];
  if (c) $("#community").value = c.community.id;
  clearFieldError("compound");
  clearFieldError("community");
  clearFieldError("place");
}

function onCommunityChange() {
  const c = state.compoundById[$("#compound").value];
  if (c && c.community.id !== $("#community").value) $("#compound").value = "";
  clearFieldError("community");
}

// --- the category's typed attributes -------------------------------------------------------

function numberBounds(attr) {
  const m = /(\d+(?:\.\d+)?)?\.\.(\d+(?:\.\d+)?)?/.exec(attr.datatype_description || "");
  return {
    min: m && m[1] !== undefined ? m[1] : null,
    max: m && m[2] !== undefined ? m[2] : null,
    step: /whole number/.test(attr.datatype_description || "") ? "1" : "any",
  };
}

function attributeField(attr) {
  const id = `attr-${attr.code}`;
  const errorId = `${id}-error`;
  const label = attr.description + (attr.required ? "" : "");
  const wrap = el("div", { class: "field", dataset: { field: `attributes.${attr.code}`, datatype: attr.datatype } });
  const error = el("p", { class: "field-error", id: errorId, hidden: true });
  const required = attr.required ? el("em", { text: "必填" }) : null;
  switch (attr.datatype) {
    case "boolean": {
      wrap.classList.add("check");
      const box = el("input", { type: "checkbox", id, name: id, "aria-describedby": errorId });
      wrap.append(el("label", {}, box, ` ${label}`), error);
      return wrap;
    }
    case "singlevaluelist": {
      const select = el("select", { id, name: id, "aria-describedby": errorId });
      select.append(el("option", { value: "", text: "请选择" }));
      for (const v of attr.values || []) select.append(el("option", { value: v.key, text: v.name }));
      wrap.append(el("label", { for: id }, `${label} `, required), select, error);
      return wrap;
    }
    case "multivaluelist": {
      const group = el("fieldset", { class: "choices", id, "aria-describedby": errorId });
      group.append(el("legend", { text: label }));
      for (const v of attr.values || []) {
        group.append(
          el("label", { class: "choice" }, el("input", { type: "checkbox", name: id, value: v.key }), ` ${v.name}`),
        );
      }
      wrap.append(group, error);
      return wrap;
    }
    case "number": {
      const b = numberBounds(attr);
      const input = el("input", {
        type: "number",
        id,
        name: id,
        inputmode: b.step === "1" ? "numeric" : "decimal",
        min: b.min,
        max: b.max,
        step: b.step,
        "aria-describedby": errorId,
      });
      const hint = b.min !== null && b.max !== null ? el("span", { class: "hint", text: `（${b.min}–${b.max}）` }) : null;
      wrap.append(el("label", { for: id }, `${label} `, hint, required), input, error);
      return wrap;
    }
    case "text": {
      const area = el("textarea", { id, name: id, rows: 3, maxlength: 1000, "aria-describedby": errorId });
      wrap.append(el("label", { for: id }, `${label} `, required), area, error);
      return wrap;
    }
    default: {
      const input = el("input", { type: "text", id, name: id, maxlength: 200, "aria-describedby": errorId });
      wrap.append(el("label", { for: id }, `${label} `, required), input, error);
      return wrap;
    }
  }
}

function onCategoryChange() {
  const cat = state.categoryByCode[$("#category").value];
  const box = $("#attribute-fields");
  const kept = cat ? readAttributes() : {};
  box.replaceChildren();
  clearFieldError("category");
  $("#attributes").hidden = !cat;
  show($("#category-dept"), cat && cat.department ? `将由社区联合${cat.department}办理` : "");
  if (!cat) return;
  const attrs = [...cat.attributes].sort((a, b) => (a.order || 0) - (b.order || 0));
  for (const attr of attrs) box.append(attributeField(attr));
  for (const [code, value] of Object.entries(kept)) writeAttribute(code, value);
}

function currentAttributes() {
  const cat = state.categoryByCode[$("#category").value];
  return cat ? cat.attributes : [];
}

// the attributes as the API takes them; untouched fields are left out
function readAttributes() {
  const out = {};
  for (const attr of currentAttributes()) {
    const id = `attr-${attr.code}`;
    if (attr.datatype === "boolean") {
      const box = document.getElementById(id);
      if (box && box.checked) out[attr.code] = true;
    } else if (attr.datatype === "multivaluelist") {
      const keys = [...document.querySelectorAll(`input[name="${id}"]:checked`)].map((i) => i.value);
      if (keys.length) out[attr.code] = keys;
    } else {
      const input = document.getElementById(id);
      const v = input ? input.value.trim() : "";
      if (v) out[attr.code] = attr.datatype === "number" && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    }
  }
  return out;
}

function writeAttribute(code, value) {
  const id = `attr-${code}`;
  const node = document.getElementById(id);
  if (!node) return;
  if (node.type === "checkbox") node.checked = value === true;
  else if (node.tagName === "FIELDSET")
    for (const i of node.querySelectorAll("input")) i.checked = Array.isArray(value) && value.includes(i.value);
  else node.value = String(value);
}

// --- location ----------------------------------------------------------------------------------

function locate() {
  const status = $("#locate-status");
  clearFieldError("location");
  if (!("geolocation" in navigator)) {
    status.textContent = "此浏览器无法获取位置（需要 HTTPS 访问），请选择小区或填写地址。";
    return;
  }
  status.textContent = "正在获取位置…";
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      $("#lat").value = pos.coords.latitude.toFixed(6);
      $("#lng").value = pos.coords.longitude.toFixed(6);
      $("#clear-location").hidden = false;
      status.textContent = `已获取位置（精度约 ${Math.round(pos.coords.accuracy)} 米）。`;
      clearFieldError("place");
    },
    (err) => {
      status.textContent =
        err.code === 1 ? "未获得位置权限，请选择小区或填写地址。" : "暂时无法获取位置，请选择小区或填写地址。";
    },
    { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
  );
}

function clearLocation() {
  $("#lat").value = "";
  $("#lng").value = "";
  $("#clear-location").hidden = true;
  $("#locate-status").textContent = "";
  clearFieldError("location");
}

// --- submitting --------------------------------------------------------------------------------

function readForm() {
  const v = (sel) => $(sel).value.trim();
  const body = {
    channel: "app",
    category: v("#category") || undefined,
    title: v("#title"),
    description: v("#description"),
    community: v("#community") || undefined,
    compound: v("#compound") || undefined,
    address: v("#address") || undefined,
    urgency: v("#urgency") || "normal",
    vulnerable: $("#vulnerable").checked,
    submitter: { name: v("#name"), phone: v("#phone") || undefined },
    attributes: readAttributes(),
  };
  const lat = v("#lat");
  const lng = v("#lng");
  if (lat || lng) body.location = { lat: lat ? Number(lat) : null, lng: lng ? Number(lng) : null };
  return JSON.parse(JSON.stringify(body)); // drops the undefined members
}

// the field key an error's loc points at ("title", "submitter.phone", "attributes.age", …)
function fieldOf(loc) {
  const rest = loc[0] === "body" ? loc.slice(1) : loc;
  if (!rest.length) return null;
  if (rest[0] === "submitter") return rest.length > 1 ? `submitter.${rest[1]}` : "submitter.name";
  if (rest[0] === "attributes") return rest.length > 1 ? `attributes.${rest[1]}` : "category";
  return String(rest[0]);
}

const INPUT_OF = {
  category: "category",
  title: "title",
  description: "description",
  community: "community",
  compound: "compound",
  address: "address",
  location: "lat",
  urgency: "urgency",
  "submitter.name": "name",
  "submitter.phone": "phone",
  place: "compound",
};
const ERROR_OF = { "submitter.name": "name-error", "submitter.phone": "phone-error" };

function errorNode(key) {
  if (key.startsWith("attributes.")) return document.getElementById(`attr-${key.slice(11)}-error`);
  return document.getElementById(ERROR_OF[key] || `${key}-error`);
}

function inputNode(key) {
  if (key.startsWith("attributes.")) return document.getElementById(`attr-${key.slice(11)}`);
  return document.getElementById(INPUT_OF[key] || key);
}

function clearFieldError(key) {
  const node = errorNode(key);
  if (node) show(node, "");
  const input = inputNode(key);
  if (input) input.removeAttribute("aria-invalid");
  const wrap = node && node.closest(".field, fieldset");
  if (wrap) wrap.classList.remove("invalid");
}

function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) show(node, "");
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of form.querySelectorAll(".invalid")) node.classList.remove("invalid");
}

function setFieldError(key, text) {
  const node = errorNode(key);
  if (!node) return false;
  show(node, node.textContent && !node.hidden ? `${node.textContent}；${text}` : text);
  const input = inputNode(key);
  if (input) input.setAttribute("aria-invalid", "true");
  const wrap = node.closest(".field, fieldset");
  if (wrap) wrap.classList.add("invalid");
  return true;
}

function numberIn(msg) {
  const m = /(-?\d+(?:\.\d+)?)/.exec(msg || "");
  return m ? m[1] : "";
}

// one validation error (SPEC details: loc, msg, type) in plain zh-CN
function zhMessage(key, err) {
  const type = err.type || "";
  const msg = err.msg || "";
  const name = FIELD_NAMES[key] || "此项";
  if (key === "place") return "请选择小区，或填写详细地址，或使用当前位置（至少一项）。";
  if (type === "missing") {
    if (key === "community") return "请选择所在社区。";
    if (key === "category") return "请选择诉求类别。";
    if (key === "location") return "请同时填写纬度和经度。";
    return `请填写${name}。`;
  }
  if (type === "string_too_short") return key === "submitter.name" ? "请填写称呼。" : `${name}至少需要 ${numberIn(msg)} 个字。`;
  if (type === "string_too_long") return `${name}最多 ${numberIn(msg)} 个字。`;
  if (key === "submitter.phone") return "请填写 11 位手机号码，例如 13812345678。";
  if (type === "unknown_community") return "请从列表中选择所在社区。";
  if (type === "unknown_compound") return "请从列表中选择小区。";
  if (type === "compound_mismatch") return "这个小区不属于所选社区，请重新选择。";
  if (type === "out_of_bounds") return "该位置不在本县范围内，请改为选择小区或填写地址。";
  if (type === "enum" || type === "attribute_singlevaluelist" || type === "attribute_multivaluelist")
    return "请从列表中选择。";
  if (type === "attribute_number") {
    if (/whole number/.test(msg)) return "请填写整数。";
    if (/at least/.test(msg)) return `不能小于 ${numberIn(msg)}。`;
    if (/at most/.test(msg)) return `不能大于 ${numberIn(msg)}。`;
    return "请填写数字。";
  }
  if (type === "attribute_boolean") return "请选择是或否。";
  if (type === "attribute_string" || type === "attribute_text")
    return /at most/.test(msg) ? `最多 ${numberIn(msg)} 个字。` : "请填写内容。";
  if (type.startsWith("float") || type.startsWith("int")) return "请填写数字。";
  return `${name}填写有误。`;
}

function showValidation(details) {
  const form = $("#request-form");
  let first = null;
  let unplaced = 0;
  for (const err of Array.isArray(details) ? details : []) {
    const loc = Array.isArray(err.loc) ? err.loc : [];
    let key = fieldOf(loc);
    if (key === null && /compound, an address or a location/.test(err.msg || "")) key = "place";
    if (key && key.startsWith("location")) key = "location";
    if (key && setFieldError(key, zhMessage(key, err))) {
      first = first || key;
    } else {
      unplaced += 1;
    }
  }
  show($("#form-alert"), unplaced && !first ? "提交内容有误，请检查后重试。" : first ? "请修改标出的项目后再提交。" : "");
  const input = first && inputNode(first);
  if (input && input.focus) input.focus();
  else $("#form-alert").scrollIntoView({ block: "center" });
  return form;
}

function idempotencyKey(body) {
  const text = JSON.stringify(body);
  if (!state.attempt || state.attempt.text !== text) {
    const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
    state.attempt = { text, key };
  }
  return state.attempt.key;
}

function holdSubmit(seconds) {
  const button = $("#submit-button");
  const status = $("#submit-status");
  clearInterval(state.retryTimer);
  let left = seconds;
  button.disabled = true;
  status.classList.add("error");
  status.textContent = `提交过于频繁，请 ${left} 秒后再试。`;
  state.retryTimer = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      clearInterval(state.retryTimer);
      button.disabled = false;
      status.textContent = "现在可以重新提交了。";
      status.classList.remove("error");
      return;
    }
    status.textContent = `提交过于频繁，请 ${left} 秒后再试。`;
  }, 1000);
}

async function submitRequest(ev) {
  ev.preventDefault();
  const form = $("#request-form");
  const button = $("#submit-button");
  const status = $("#submit-status");
  clearErrors(form);
  show($("#form-alert"), "");
  status.classList.remove("error");
  const body = readForm();
  button.disabled = true;
  status.textContent = "正在提交…";
  let r;
  try {
    r = await api("POST", "/v1/requests", body, { "idempotency-key": idempotencyKey(body) });
  } catch (e) {
    button.disabled = false;
    status.classList.add("error");
    status.textContent = NETWORK_TEXT;
    return;
  }
  if (r.status === 201 && r.data) {
    button.disabled = false;
    status.textContent = "";
    state.attempt = null;
    state.receipt = r.data;
    showReceipt(r.data);
    location.hash = "#/done";
    return;
  }
  if (r.status === 429) {
    holdSubmit(retrySeconds(r));
    return;
  }
  button.disabled = false;
  if (r.status === 422) {
    status.textContent = "";
    showValidation(r.data && r.data.error ? r.data.error.details : []);
    return;
  }
  status.classList.add("error");
  status.textContent = problemText(r);
}

function trackingHash(id, code) {
  return `#/track?id=${encodeURIComponent(id)}&code=${encodeURIComponent(code)}`;
}

function showReceipt(receipt) {
  const link = `${location.origin}/r/${trackingHash(receipt.id, receipt.tracking_code)}`;
  $("#done-id").textContent = receipt.id;
  $("#done-code").textContent = receipt.tracking_code;
  $("#done-url").textContent = link;
  $("#done-link").setAttribute("href", trackingHash(receipt.id, receipt.tracking_code));
  $("#done-qr").setAttribute("src", `/r/qr.svg?data=${encodeURIComponent(link)}`);
  show($("#done-duplicate"), receipt.duplicate_of ? `已有相似诉求 ${receipt.duplicate_of} 正在办理，已为您关联，会一并处理。` : "");
}

function startOver(ev) {
  ev.preventDefault();
  $("#request-form").reset();
  clearErrors($("#request-form"));
  clearLocation();
  onCategoryChange();
  fillCompounds("");
  state.receipt = null;
  location.hash = "#/";
}

// --- tracking ------------------------------------------------------------------------------------

function stopPolling() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
}

function startTracking(id, code) {
  state.track = { id, code };
  show($("#track-alert"), "");
  loadRequest();
}

function onTrackSubmit(ev) {
  ev.preventDefault();
  const form = $("#track-form");
  clearErrors(form);
  const id = $("#track-id").value.trim().toUpperCase();
  const code = $("#track-code").value.trim();
  let ok = true;
  if (!ID_RE.test(id)) {
    show($("#track-id-error"), "请填写诉求编号，格式如 YS-20260101-000001。");
    $("#track-id").setAttribute("aria-invalid", "true");
    ok = false;
  }
  if (!CODE_RE.test(code)) {
    show($("#track-code-error"), "请填写提交时得到的查询码。");
    $("#track-code").setAttribute("aria-invalid", "true");
    ok = false;
  }
  if (!ok) return;
  const hash = trackingHash(id, code);
  if (location.hash === hash) startTracking(id, code);
  else location.hash = hash;
}

async function loadRequest() {
  stopPolling();
  const t = state.track;
  if (!t) return;
  let r;
  try {
    r = await api("GET", `/v1/requests/${encodeURIComponent(t.id)}?tracking_code=${encodeURIComponent(t.code)}`);
  } catch (e) {
    show($("#track-alert"), "网络连接失败，正在重试…");
    schedulePoll();
    return;
  }
  if (state.track !== t) return; // another request was asked for meanwhile
  if (r.status !== 200 || !r.data) {
    $("#request-card").hidden = true;
    show($("#track-alert"), problemText(r));
    if (r.status >= 500) schedulePoll();
    return;
  }
  show($("#track-alert"), "");
  renderRequest(r.data);
  if (!["closed", "withdrawn"].includes(r.data.status)) schedulePoll();
}

function schedulePoll() {
  stopPolling();
  if (parseHash().path !== "/track") return;
  state.pollTimer = setTimeout(() => {
    if (document.hidden) schedulePoll();
    else loadRequest();
  }, POLL_MS);
}

function renderRequest(req) {
  const card = $("#request-card");
  card.hidden = false;
  card.dataset.status = req.status;
  $("#req-title").textContent = req.title || "";
  $("#req-id").textContent = req.id;
  const cat = state.categoryByCode[req.category];
  $("#req-category").textContent = cat ? cat.name : req.category || "";
  const status = $("#req-status");
  status.textContent = req.status_name || STATUS_NAMES[req.status] || req.status;
  status.dataset.status = req.status;
  $("#req-reopened").hidden = req.status !== "reopened";

  const list = $("#timeline");
  list.replaceChildren();
  for (const e of req.timeline || []) {
    const item = el(
      "li",
      { dataset: { kind: e.kind || "", status: e.status || "" } },
      el("time", { datetime: e.at, text: formatTime(e.at) }),
      el("p", { class: "note", text: e.note || "" }),
    );
    if (e.detail) item.append(el("p", { class: "detail", text: e.detail }));
    list.append(item);
  }

  const canRate = req.status === "resolved" && req.awaiting_feedback;
  $("#rating").hidden = !canRate;
  const rated = $("#rated");
  const feedback = req.feedback || [];
  const last = feedback[feedback.length - 1];
  // after a rating, until the next resolution: what was said (a reopening says so itself)
  if (!canRate && last && ["resolved", "closed"].includes(req.status)) {
    const text =
      last.rating === "dissatisfied"
        ? "您的评价：不满意。正在重新交办…"
        : `您的评价：${RATING_NAMES[last.rating] || last.rating}。感谢您的反馈！`;
    show(rated, text);
    rated.dataset.rating = last.rating;
  } else {
    show(rated, "");
  }
}

async function submitRating(ev) {
  ev.preventDefault();
  const t = state.track;
  if (!t) return;
  const status = $("#rating-status");
  const chosen = document.querySelector('#rating-form input[name="rating"]:checked');
  show($("#rating-error"), "");
  show($("#comment-error"), "");
  status.classList.remove("error");
  if (!chosen) {
    show($("#rating-error"), "请选择满意、基本满意或不满意。");
    return;
  }
  const comment = $("#rating-comment").value.trim();
  if (chosen.value === "dissatisfied" && !comment) {
    show($("#comment-error"), "请说明不满意的原因，便于重新办理。");
    $("#rating-comment").focus();
    return;
  }
  const button = $("#rating-form button[type=submit]");
  button.disabled = true;
  status.textContent = "正在提交…";
  let r;
  try {
    r = await api("POST", `/v1/requests/${encodeURIComponent(t.id)}/feedback`, {
      tracking_code: t.code,
      rating: chosen.value,
      comment: comment || undefined,
    });
  } catch (e) {
    button.disabled = false;
    status.classList.add("error");
    status.textContent = NETWORK_TEXT;
    return;
  }
  button.disabled = false;
  if (r.status === 201) {
    status.textContent = "";
    $("#rating-form").reset();
    await loadRequest();
    return;
  }
  status.classList.add("error");
  if (r.status === 422) status.textContent = "评价内容有误，意见最多 500 字。";
  else status.textContent = problemText(r);
}

// --- start ---------------------------------------------------------------------------------------

function start() {
  $("#request-form").addEventListener("submit", submitRequest);
  $("#category").addEventListener("change", onCategoryChange);
  $("#compound").addEventListener("change", onCompoundChange);
  $("#community").addEventListener("change", onCommunityChange);
  $("#compound-search").addEventListener("input", (ev) => fillCompounds(ev.target.value));
  $("#locate").addEventListener("click", locate);
  $("#clear-location").addEventListener("click", clearLocation);
  $("#another").addEventListener("click", startOver);
  $("#track-form").addEventListener("submit", onTrackSubmit);
  $("#rating-form").addEventListener("submit", submitRating);
  $("#refresh").addEventListener("click", () => loadRequest());
  // an edited field loses its error mark
  $("#request-form").addEventListener("input", (ev) => {
    const wrap = ev.target.closest("[data-field]");
    if (wrap) clearFieldError(wrap.dataset.field);
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.pollTimer) loadRequest();
  });
  loadReference().then(() => {
    if (state.track) loadRequest(); // names of categories arrived after the first answer
  });
  route();
}

document.addEventListener("DOMContentLoaded", start);
