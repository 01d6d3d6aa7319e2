// 同心 staff console: queue, case detail, whistle board, volunteers, KPIs.
// Every figure comes from the services' APIs: intake directly (same origin), routing and
// volunteer through intake's proxy /console/api/{service}/... with the caller's token.
// People sign in with name and password (POST /v1/session): the session is an HttpOnly
// cookie this script never sees; writes carry the session's CSRF token in X-CSRF-Token.
// A pasted API token (bearer) still works, kept in sessionStorage. Where the county's
// identity provider is configured (GET /v1/session/oidc), "通过统一身份认证登录" leaves for it
// and its callback returns here signed in (the same cookie), or with ?oidc_error=<code>.
"use strict";

const TOKEN_KEY = "tongxin.console.token";
// zh-CN names come from labels.js (LABELS, written from tongxin.contracts.enums)
const TIERS = ["routine", "general", "major", "special"].map((key) => ({ key, label: LABELS.mode[key] }));
const TIER_LABEL = Object.fromEntries(TIERS.map((t) => [t.key, t.label]));
const STATUS_LABEL = {
  routed: "待受理",
  acknowledged: "已受理",
  in_progress: "办理中",
  resolved: "已办结待回访",
  returned: "已退单",
  reopened: "重新办理",
  closed: "已结案",
};
// escalated above the community: the level a case went up to
const LEVEL_LABEL = Object.fromEntries(Object.entries(LABELS.level).filter(([k]) => k !== "community"));
const OPEN = new Set(["routed", "acknowledged", "in_progress", "returned", "reopened"]);
const ROLE_LABEL = {
  staff: "工作人员",
  department: "联盟部门",
  admin: "管理员",
  platform: "对接平台",
  volunteer: "志愿者",
};
const ASSIGN_ROLE = {
  lead: "牵头办理",
  whistled: "吹哨报到",
  support: "协办",
  coordinator: "统筹督办",
  escalation: "上级督办",
};
const EVENT_LABEL = {
  "case.routed": "派单",
  "case.acknowledged": "受理",
  "case.progressed": "反馈进展",
  "case.resolved": "办结",
  "case.returned": "退单",
  "case.whistled": "吹哨",
  "case.escalated": "升级督办",
  "case.closed": "结案",
  "deadline.missed": "超时",
  feedback: "群众评价",
};
const ERROR_LABEL = {
  unauthorized: "登录已失效或令牌无效",
  bad_credentials: "登录未成功",
  locked: "账号已暂时锁定",
  account_disabled: "账号已停用",
  password_change_required: "请先设置新密码",
  weak_password: "新密码不符合要求",
  csrf: "登录已过期",
  no_account: "没有对应账号",
  oidc_expired: "登录请求已失效",
  oidc_failed: "统一身份认证未通过",
  oidc_unavailable: "统一身份认证暂时无法访问",
  cross_site: "请求被拒绝",
  forbidden: "无权进行此操作",
  not_found: "未找到",
  invalid_transition: "当前状态不允许此操作",
  conflict: "案件刚被他人更新，请重试",
  validation_error: "填写内容有误",
  upstream_unavailable: "服务暂时无法访问",
  upstream_timeout: "服务响应超时",
  rate_limited: "操作过于频繁",
  internal: "服务内部错误",
};
const SKILL_LABEL = LABELS.skill;
const CARE_LABEL = LABELS.care;
const skills = (list) => (list || []).map((s) => SKILL_LABEL[s] || s).join("、");
const ACTION_LABEL = {
  acknowledge: "受理",
  progress: "反馈进展",
  resolve: "办结",
  return: "退单",
};

const state = { token: null, csrf: null, me: null, names: {}, categories: {}, timer: null, refresh: null, seq: 0 };

// --- DOM helpers ------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return el;
}

const $ = (sel) => document.querySelector(sel);
const view = () => $("#view");

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("zh-CN", { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtSpan(ms) {
  const s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d) return `${d}天${hh}时${mm}分`;
  if (hh) return `${hh}时${mm}分`;
  return `${mm}分${ss}秒`;
}

// a live countdown: refreshed every second by tick()
function countdown(deadline, label) {
  if (!deadline) return h("span", { class: "countdown none" }, "—");
  return h("span", { class: "countdown", "data-deadline": deadline, "data-label": label || "" });
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-deadline]")) {
    const left = new Date(el.dataset.deadline).getTime() - now;
    const label = el.dataset.label ? `${el.dataset.label} ` : "";
    el.textContent = left >= 0 ? `${label}剩余 ${fmtSpan(left)}` : `${label}已超时 ${fmtSpan(left)}`;
    el.classList.toggle("overdue", left < 0);
    const card = el.closest("[data-watch-overdue]");
    if (card && left < 0) card.classList.add("overdue");
  }
}

function name(id) {
  return (id && state.names[id]) || id || "—";
}

// --- API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "error";
    this.details = e.details;
  }
}

async function call(url, { method = "GET", body, auth = true } = {}) {
  const headers = { accept: "application/json" };
  if (auth && state.token) headers.authorization = `Bearer ${state.token}`;
  else if (state.csrf && method !== "GET") headers["x-csrf-token"] = state.csrf;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (exc) {
    throw new ApiError(0, { error: { code: "upstream_unavailable", message: String(exc) } });
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    if (res.status === 401 && auth && state.me) expired();
    throw new ApiError(res.status, data);
  }
  return { data, next: res.headers.get("x-next-cursor") };
}

const routing = (path, opts) => call(`/console/api/routing${path}`, opts);
const volunteer = (path, opts) => call(`/console/api/volunteer${path}`, opts);

// every page of a routing list (bounded)
async function allPages(path, maxPages = 10) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const r = await routing(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    out.push(...r.data);
    cursor = r.next;
    if (!cursor) break;
  }
  return out;
}

function errorBox(err) {
  const code = err.code || "error";
  const box = h(
    "div",
    { class: "error", role: "alert", "data-code": code },
    h("strong", {}, `${ERROR_LABEL[code] || "操作未成功"}（${code}${err.status ? ` · HTTP ${err.status}` : ""}）`),
    h("div", { class: "message" }, err.message),
  );
  if (err.details && err.details.allowed) {
    const allowed = err.details.allowed.map((a) => ACTION_LABEL[a] || a).join("、") || "无";
    box.appendChild(h("div", { class: "details" }, `当前可进行：${allowed}`));
  } else if (Array.isArray(err.details)) {
    for (const d of err.details) {
      box.appendChild(h("div", { class: "details" }, `${(d.loc || []).join(".")} ${d.msg || ""}`));
    }
  }
  return box;
}

// --- session ----------------------------------------------------------------------------

async function loadReference() {
  const [units, cats, compounds] = await Promise.all([
    routing("/v1/units", { auth: false }),
    call("/v1/categories", { auth: false }),
    call("/v1/compounds", { auth: false }),
  ]);
  for (const u of units.data) state.names[u.id] = u.name;
  state.departments = units.data.filter((u) => u.kind === "department");
  for (const c of cats.data) state.categories[c.code] = c.name;
  for (const c of compounds.data) {
    state.names[c.id] = c.name;
    for (const x of c.compounds) state.names[x.id] = x.name;
  }
}

async function signIn(token) {
  state.token = token;
  const me = await call("/console/api/me");
  state.me = me.data;
  sessionStorage.setItem(TOKEN_KEY, token);
  await loadReference();
  showSignedIn();
}

// a session (POST /v1/session, /v1/session/password or GET /v1/session) is signed in
async function startSession(session) {
  state.token = null;
  state.csrf = session.csrf_token;
  state.me = { sub: session.name, role: session.role, unit: session.unit, display: session.display_name };
  await loadReference();
  showSignedIn();
}

async function signInWithPassword(name, password) {
  try {
    const r = await call("/v1/session", { method: "POST", body: { name, password }, auth: false });
    await startSession(r.data);
  } catch (err) {
    if (err.code !== "password_change_required") throw err;
    showPasswordForm(name, password);
  }
}

function showPasswordForm(name, current) {
  $("#login-form").hidden = true;
  $("#password-form").hidden = false;
  $("#pw-name").value = name;
  $("#pw-current").value = current;
  $("#signin-error").replaceChildren(
    h("div", { class: "notice", role: "status" }, "首次登录或密码已被重置，请先设置新密码。"),
  );
  $("#pw-new").focus();
}

async function resumeSession() {
  let r;
  try {
    r = await call("/v1/session", { auth: false });
  } catch {
    return false;
  }
  await startSession(r.data);
  return true;
}

// sign-in through the identity provider: the button where it is configured, and why the
// provider's callback did not sign in (the reason's code only ever comes in the URL)
const OIDC_MESSAGE = {
  no_account: "统一身份认证账号在本平台没有对应账号，请联系管理员开通。",
  account_disabled: "该账号已停用，请联系管理员。",
  oidc_expired: "登录请求已失效或不是从本页面发起，请重新点击“通过统一身份认证登录”。",
  oidc_failed: "统一身份认证登录未成功，请重试。",
  oidc_unavailable: "统一身份认证服务暂时无法访问，请稍后再试或使用用户名和密码登录。",
};

async function offerOidc() {
  const params = new URLSearchParams(location.search);
  const code = params.get("oidc_error");
  if (code !== null) {
    history.replaceState(null, "", location.pathname + location.hash);
    const known = Object.hasOwn(OIDC_MESSAGE, code) ? code : "oidc_failed";
    $("#signin-error").replaceChildren(errorBox({ code: known, message: OIDC_MESSAGE[known] }));
  }
  try {
    const r = await call("/v1/session/oidc", { auth: false });
    $("#oidc-signin").hidden = !(r.data && r.data.enabled);
  } catch {
    $("#oidc-signin").hidden = true;
  }
}

// the session cookie is HttpOnly: only the server can clear it
async function endSession() {
  if (state.token || !state.me) return;
  try {
    await fetch("/v1/session", { method: "DELETE" });
  } catch {
    // offline: the cookie expires by itself
  }
}

function expired() {
  const cookie = !state.token;
  endSession();
  signOut(false);
  $("#signin-error").replaceChildren(
    h("div", { class: "error", role: "alert", "data-code": "expired" }, cookie ? "登录已过期，请重新登录。" : "令牌已失效，请重新登录。"),
  );
}

function signOut(clear = true) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.csrf = null;
  state.me = null;
  if (clear) $("#signin-error").replaceChildren();
  showSignedOut();
}

function showSignedIn() {
  const me = state.me;
  const who = $("#whoami");
  who.replaceChildren(
    h("span", { class: "unit", "data-unit": me.unit || "" }, me.unit ? name(me.unit) : "全镇"),
    h("span", { class: "role", "data-role": me.role }, ROLE_LABEL[me.role] || me.role),
    h("span", { class: "sub" }, me.display && me.display !== me.sub ? `${me.display}（${me.sub}）` : me.sub),
  );
  who.hidden = false;
  $("#signout").hidden = false;
  $("#nav").hidden = false;
  $("#signin").hidden = true;
  if (!location.hash || location.hash === "#/") location.hash = "#/queue";
  else route();
}

function showSignedOut() {
  $("#whoami").hidden = true;
  $("#signout").hidden = true;
  $("#nav").hidden = true;
  $("#signin").hidden = false;
  $("#login-form").hidden = false;
  $("#password-form").hidden = true;
  for (const id of ["#login-password", "#pw-current", "#pw-new", "#pw-new2"]) $(id).value = "";
  state.seq++; // whatever was loading must not paint
  view().replaceChildren();
  stopRefresh();
}

// --- router -----------------------------------------------------------------------------

function stopRefresh() {
  if (state.refresh) clearInterval(state.refresh);
  state.refresh = null;
}

function every(ms, fn) {
  stopRefresh();
  state.refresh = setInterval(fn, ms);
}

// Render the page the hash names. Pages paint through paint(), which does nothing once the
// user has moved on (a slow answer for an old page must not overwrite the new one).
// quiet: a refresh keeps the page on screen until the new answer is in.
async function route(quiet = false) {
  if (!state.me) return;
  stopRefresh();
  const seq = ++state.seq;
  const paint = (...nodes) => {
    if (seq !== state.seq) return false;
    view().replaceChildren(...nodes);
    tick();
    return true;
  };
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === page || (page === "case" && a.dataset.nav === "queue"));
  }
  const pages = { queue: queuePage, case: casePage, whistle: whistlePage, volunteers: volunteersPage, kpi: kpiPage };
  const render = pages[page] || queuePage;
  if (quiet !== true) paint(h("p", { class: "loading" }, "加载中…"));
  try {
    await render(decodeURIComponent(rest.join("/")), paint);
  } catch (err) {
    paint(errorBox(err));
  }
}

// --- (1) queue --------------------------------------------------------------------------

// the deadline that matters now for this case (and for the caller's own unit)
function dueOf(c) {
  const mine = state.me.unit && (c.assignments || []).find((a) => a.active && a.unit === state.me.unit);
  if (mine && mine.acknowledge_by && !mine.acknowledged_at && OPEN.has(c.status)) {
    return { at: mine.acknowledge_by, label: mine.role === "whistled" ? "报到" : "受理" };
  }
  if (c.status === "routed" || c.status === "reopened") {
    return { at: c.acknowledge_by, label: c.whistled ? "报到" : "受理" };
  }
  if (c.status === "acknowledged" || c.status === "in_progress") return { at: c.resolve_by, label: "办结" };
  return null;
}

// a unit missed its deadline and has still not answered (routing escalated the case)
function missed(c) {
  return OPEN.has(c.status) && (c.assignments || []).some((a) => a.active && a.breached && !a.acknowledged_at);
}

function flags(c) {
  return [
    c.overdue ? h("span", { class: "flag" }, "超期未办结") : null,
    missed(c) ? h("span", { class: "flag" }, `超时未受理${LEVEL_LABEL[c.level] ? `，已升级至${LEVEL_LABEL[c.level]}` : ""}`) : null,
  ];
}

function caseCard(c) {
  const due = dueOf(c);
  const overdue = c.overdue || missed(c) || (due && new Date(due.at).getTime() < Date.now());
  return h(
    "a",
    {
      class: `case-card${overdue ? " overdue" : ""}`,
      href: `#/case/${encodeURIComponent(c.id)}`,
      "data-case-id": c.id,
      "data-status": c.status,
      "data-watch-overdue": "",
    },
    h("div", { class: "row1" }, h("span", { class: "case-id" }, c.id), h("span", { class: `status s-${c.status}` }, STATUS_LABEL[c.status] || c.status)),
    h("div", { class: "row2" }, `${state.categories[c.category] || c.category} · ${name(c.community)}${c.compound ? ` · ${name(c.compound)}` : ""}`),
    h("div", { class: "row3" }, due ? countdown(due.at, `${due.label}时限`) : h("span", { class: "countdown none" }, STATUS_LABEL[c.status] || c.status)),
    h("div", { class: "flags" }, flags(c)),
  );
}

// what routing lets the caller see (routing filters by the token; this only says so)
function scopeText() {
  const me = state.me;
  if (me.role === "department" || me.role === "platform") return `仅显示派给 ${name(me.unit)} 的案件。`;
  if (me.role === "staff" && (me.unit || "").startsWith("community:")) return `仅显示 ${name(me.unit)} 的案件。`;
  return "显示全部案件。";
}

async function queuePage(_arg, paint) {
  const showAll = sessionStorage.getItem("tongxin.console.all") === "1";
  const cases = await allPages("/v1/cases?limit=200", 5);
  const shown = showAll ? cases : cases.filter((c) => OPEN.has(c.status) || c.status === "resolved");
  const toggle = h("label", { class: "toggle" }, h("input", {
    type: "checkbox",
    id: "show-all",
    checked: showAll,
    onchange: (e) => {
      sessionStorage.setItem("tongxin.console.all", e.target.checked ? "1" : "0");
      route();
    },
  }), " 显示已结案");
  const sections = TIERS.map((t) => {
    const mine = shown.filter((c) => c.tier === t.key);
    mine.sort((a, b) => {
      const da = dueOf(a);
      const db = dueOf(b);
      return (da ? new Date(da.at).getTime() : Infinity) - (db ? new Date(db.at).getTime() : Infinity);
    });
    return h(
      "section",
      { class: `tier tier-${t.key}`, "data-tier": t.key },
      h("h2", {}, t.label, h("span", { class: "count" }, `${mine.length} 件`)),
      mine.length ? h("div", { class: "cards" }, mine.map(caseCard)) : h("p", { class: "empty" }, "暂无案件"),
    );
  });
  if (!paint(
    h("div", { class: "page-head" }, h("h1", {}, "案件队列"), toggle, h("button", { type: "button", class: "secondary", onclick: () => route(true) }, "刷新")),
    h("p", { class: "hint", id: "scope" }, scopeText()),
    h("div", { class: "tiers" }, sections),
  )) return;
  every(20000, () => {
    if (location.hash.startsWith("#/queue")) route(true);
  });
}

// --- (2) case detail --------------------------------------------------------------------

function isCoordinator() {
  const me = state.me;
  return (me.role === "staff" && !(me.unit || "").startsWith("community:")) || me.role === "admin";
}

// a unit's answer to its deadline: whistled departments report in (报到), others accept (受理)
function assignmentState(a) {
  const verb = a.role === "whistled" ? "报到" : "受理";
  if (a.acknowledged_at) {
    const late = a.in_time === false;
    return { text: `${late ? "超时" : "已"}${verb} ${fmtTime(a.acknowledged_at)}`, cls: late ? "late" : "done" };
  }
  if (!a.acknowledge_by) return { text: "—", cls: "none" };
  if (a.breached || new Date(a.acknowledge_by).getTime() < Date.now()) return { text: `超时未${verb}`, cls: "missed" };
  return { text: `待${verb}`, cls: "pending" };
}

function renderCase(c, notice) {
  const host = h("div", { class: "case-detail", "data-case-id": c.id, "data-status": c.status });
  const add = (...nodes) => host.append(...nodes.filter(Boolean));
  // an action's answer repaints this case only while the user is still on it
  const shownAt = state.seq;
  const repaint = (data, notice) => {
    if (state.seq !== shownAt) return;
    view().replaceChildren(renderCase(data, notice));
    tick();
  };
  const cls = c.classification || {};
  const due = dueOf(c);
  add(
    h("p", {}, h("a", { href: "#/queue", class: "back" }, "← 返回队列")),
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, c.id),
      h("span", { class: `badge tier-${c.tier}` }, TIER_LABEL[c.tier] || c.tier),
      h("span", { class: `status s-${c.status}`, id: "case-status" }, STATUS_LABEL[c.status] || c.status),
      flags(c),
    ),
    notice ? h("div", { class: "notice", role: "status" }, notice) : null,
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "诉求编号"), h("dd", {}, c.request_id),
      h("dt", {}, "类别"), h("dd", {}, state.categories[c.category] || c.category),
      h("dt", {}, "社区/小区"), h("dd", {}, `${name(c.community)}${c.compound ? ` · ${name(c.compound)}` : ""}`),
      h("dt", {}, "首接单位"), h("dd", {}, name(c.accountable_unit)),
      h("dt", {}, "受理时间"), h("dd", {}, fmtTime(c.opened_at)),
      h("dt", {}, "当前时限"), h("dd", {}, due ? countdown(due.at, due.label) : STATUS_LABEL[c.status]),
      h("dt", {}, "办结时限"), h("dd", {}, fmtTime(c.resolve_by)),
    ),
    h(
      "section",
      { class: "panel classification" },
      h("h2", {}, "分级依据"),
      h("p", { id: "classification-reason" }, cls.reason || "—"),
      h("p", { class: "hint" }, `规则：${cls.rule || "—"}`),
    ),
  );
  if (c.returned) add(h("div", { class: "notice" }, `退单原因：${c.returned.reason}（${name(c.returned.unit)}）`));

  // assignments: who must report in, and whether they did
  const rows = (c.assignments || []).filter((a) => a.active).map((a) => {
    const st = assignmentState(a);
    return h(
      "tr",
      { "data-unit": a.unit },
      h("td", {}, name(a.unit)),
      h("td", {}, ASSIGN_ROLE[a.role] || a.role),
      h("td", {}, a.acknowledge_by && !a.acknowledged_at && st.cls === "pending" ? countdown(a.acknowledge_by) : fmtTime(a.acknowledge_by)),
      h("td", {}, h("span", { class: `report report-${st.cls}` }, st.text)),
    );
  });
  host.append(
    h(
      "section",
      { class: "panel" },
      h("h2", {}, "承办单位"),
      h("div", { class: "scroll" }, h("table", { class: "assignments" }, h("thead", {}, h("tr", {}, h("th", {}, "单位"), h("th", {}, "角色"), h("th", {}, "报到时限"), h("th", {}, "报到情况"))), h("tbody", {}, rows))),
    ),
  );

  // actions the API says are possible now
  const actions = h("section", { class: "panel actions", id: "actions" }, h("h2", {}, "办理"));
  const errors = h("div", { id: "action-error" });
  const note = h("textarea", { id: "action-note", rows: 2, placeholder: "办理说明（退单时填写原因）", maxlength: 2000 });
  const mineA = state.me.unit && (c.assignments || []).find((a) => a.active && a.unit === state.me.unit);
  const buttons = (c.allowed_actions || []).map((act) => {
    const label = act === "acknowledge" && mineA && mineA.role === "whistled" ? "报到" : ACTION_LABEL[act] || act;
    return h("button", {
      type: "button",
      "data-action": act,
      class: act === "return" ? "secondary" : "",
      onclick: async (e) => {
        e.target.disabled = true;
        errors.replaceChildren();
        const text = note.value.trim();
        // a return's reason is checked by routing (422 with the field), like every rule
        const body = act === "return" ? { reason: text } : text ? { note: text } : undefined;
        try {
          const r = await routing(`/v1/cases/${encodeURIComponent(c.id)}/${act}`, { method: "POST", body });
          repaint(r.data, `已${label}。`);
        } catch (err) {
          errors.replaceChildren(errorBox(err));
          e.target.disabled = false;
        }
      },
    }, label);
  });
  if (buttons.length) actions.append(note, h("div", { class: "buttons" }, buttons));
  else actions.append(h("p", { class: "hint" }, "当前没有可进行的办理操作。"));
  actions.append(errors);
  host.append(actions);

  if (isCoordinator() && OPEN.has(c.status)) host.append(whistleForm(c, repaint));

  // timeline, newest last
  const whistled = new Set((c.assignments || []).filter((a) => a.role === "whistled").map((a) => a.unit));
  const eventLabel = (e) =>
    e.event === "case.acknowledged" ? (whistled.has(e.unit) ? "报到" : "受理") : EVENT_LABEL[e.event] || e.event;
  const items = (c.history || []).map((e) =>
    h(
      "li",
      { "data-event": e.event },
      h("time", {}, fmtTime(e.at)),
      h("span", { class: "event" }, eventLabel(e)),
      h("span", { class: "who" }, [e.unit ? name(e.unit) : null, (e.units || []).map(name).join("、") || null, e.by ? `（${e.by}）` : null].filter(Boolean).join(" ")),
      e.note ? h("div", { class: "note" }, e.note) : null,
    ),
  );
  host.append(h("section", { class: "panel" }, h("h2", {}, "办理时间线"), h("ol", { class: "timeline", id: "timeline" }, items)));
  return host;
}

function whistleForm(c, repaint) {
  const on = new Set((c.assignments || []).filter((a) => a.active).map((a) => a.unit));
  const boxes = (state.departments || []).filter((d) => !on.has(d.id)).map((d) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "dept", value: d.id }), ` ${d.name}`),
  );
  const reason = h("input", { type: "text", id: "whistle-reason", maxlength: 2000, placeholder: "吹哨事由" });
  const errors = h("div", { id: "whistle-error" });
  const form = h(
    "form",
    {
      class: "panel whistle-form",
      id: "whistle-form",
      onsubmit: async (e) => {
        e.preventDefault();
        errors.replaceChildren();
        const units = [...form.querySelectorAll("input[name=dept]:checked")].map((i) => i.value);
        try {
          const r = await routing(`/v1/cases/${encodeURIComponent(c.id)}/whistle`, {
            method: "POST",
            body: { units, reason: reason.value.trim() || null },
          });
          repaint(r.data, `已吹哨：${units.map(name).join("、")}`);
        } catch (err) {
          errors.replaceChildren(errorBox(err));
        }
      },
    },
    h("h2", {}, "吹哨：召集联盟部门报到"),
    h("div", { class: "checks" }, boxes),
    reason,
    h("button", { type: "submit" }, "吹哨"),
    errors,
  );
  return form;
}

async function casePage(id, paint) {
  const r = await routing(`/v1/cases/${encodeURIComponent(id)}`);
  paint(renderCase(r.data));
}

// --- (3) whistle board ------------------------------------------------------------------

async function whistlePage(_arg, paint) {
  const cases = (await allPages("/v1/cases?tier=major&limit=200", 5)).filter((c) => OPEN.has(c.status));
  const depts = [];
  for (const c of cases) {
    for (const a of c.assignments || []) {
      if (a.active && a.role === "whistled" && !depts.includes(a.unit)) depts.push(a.unit);
    }
  }
  depts.sort();
  const summary = depts.map((d) => {
    const counts = { pending: 0, done: 0, late: 0, missed: 0 };
    for (const c of cases) {
      const a = (c.assignments || []).find((x) => x.active && x.unit === d && x.role === "whistled");
      if (a) counts[assignmentState(a).cls] = (counts[assignmentState(a).cls] || 0) + 1;
    }
    return h(
      "tr",
      { "data-unit": d },
      h("th", {}, name(d)),
      ["pending", "done", "late", "missed"].map((k) =>
        h("td", { class: counts[k] ? `report-${k}` : "zero" }, String(counts[k])),
      ),
    );
  });
  const matrix = cases.map((c) =>
    h(
      "tr",
      { "data-case-id": c.id },
      h("th", {}, h("a", { href: `#/case/${encodeURIComponent(c.id)}` }, c.id), h("div", { class: "hint" }, `${state.categories[c.category] || c.category} · ${name(c.community)}`)),
      depts.map((d) => {
        const a = (c.assignments || []).find((x) => x.active && x.unit === d && x.role === "whistled");
        if (!a) return h("td", { class: "report-none" }, "—");
        const st = assignmentState(a);
        return h("td", { "data-unit": d, class: `report-${st.cls}` }, st.cls === "pending" ? countdown(a.acknowledge_by, "待报到") : st.text);
      }),
    ),
  );
  const painted = paint(
    h("div", { class: "page-head" }, h("h1", {}, "吹哨报到看板"), h("button", { type: "button", class: "secondary", onclick: () => route(true) }, "刷新")),
    h("p", { class: "hint" }, `未办结的重大事项 ${cases.length} 件，涉及 ${depts.length} 个联盟部门。`),
    cases.length
      ? h(
          "div",
          {},
          h("section", { class: "panel" }, h("h2", {}, "各部门报到情况"), h("div", { class: "scroll" }, h("table", { class: "board-summary" }, h("thead", {}, h("tr", {}, h("th", {}, "部门"), h("th", {}, "待报到"), h("th", {}, "按时报到"), h("th", {}, "超时报到"), h("th", {}, "超时未报到"))), h("tbody", {}, summary)))),
          h("section", { class: "panel" }, h("h2", {}, "案件 × 部门"), h("div", { class: "scroll" }, h("table", { class: "board", id: "whistle-board" }, h("thead", {}, h("tr", {}, h("th", {}, "案件"), depts.map((d) => h("th", { "data-unit": d }, name(d))))), h("tbody", {}, matrix)))),
        )
      : h("p", { class: "empty" }, "暂无未办结的吹哨报到案件。"),
  );
  if (!painted) return;
  every(15000, () => {
    if (location.hash.startsWith("#/whistle")) route(true);
  });
}

// --- (4) volunteers ---------------------------------------------------------------------

async function section(title, id, load, row, empty) {
  const host = h("section", { class: "panel", id }, h("h2", {}, title));
  try {
    const items = await load();
    host.append(items.length ? h("ul", { class: "list" }, items.map(row)) : h("p", { class: "empty" }, empty));
  } catch (err) {
    host.append(errorBox(err));
  }
  return host;
}

async function volunteersPage(_arg, paint) {
  const parts = await Promise.all([
    section(
      "待响应的服务邀约",
      "offers",
      async () => (await volunteer("/v1/tasks?status=offered&limit=100")).data,
      (t) => h("li", { "data-task-id": t.id }, h("strong", {}, t.volunteer_name || t.volunteer_id || "—"), ` · ${skills(t.skills)} · 案件 ${t.case_id}`, " ", countdown(t.accept_by, "应答")),
      "暂无待响应的邀约。",
    ),
    section(
      "未匹配到志愿者的任务",
      "unmatched",
      async () => (await volunteer("/v1/tasks?status=unmatched&limit=100")).data,
      (t) => h("li", { "data-task-id": t.id, class: "warn" }, h("strong", {}, t.id), ` · 案件 ${t.case_id} · ${skills(t.skills)}`, h("div", { class: "hint" }, t.unmatched_reason || "")),
      "所有任务都已匹配。",
    ),
    section(
      "逾期未探访的关爱对象",
      "overdue-visits",
      async () => (await volunteer("/v1/care-recipients/overdue")).data,
      (v) => h("li", { "data-visit-id": v.id, class: "overdue" }, h("strong", {}, (v.recipient && v.recipient.name) || v.recipient_id), ` · ${CARE_LABEL[(v.recipient || {}).care_type] || ""} · ${name(v.community)} · 应于 ${fmtTime(v.deadline)} 前探访 · `, countdown(v.deadline)),
      "没有逾期的探访。",
    ),
  ]);
  paint(h("div", { class: "page-head" }, h("h1", {}, "志愿服务")), ...parts);
}

// --- (5) KPIs ---------------------------------------------------------------------------

async function kpiPage(_arg, paint) {
  const days = Number(sessionStorage.getItem("tongxin.console.window") || "30");
  const since = new Date(Date.now() - days * 86400000).toISOString();
  const q = `since=${encodeURIComponent(since)}`;
  const [units, daily] = await Promise.all([routing(`/v1/stats/units?${q}`), routing(`/v1/stats/daily?${q}`)]);
  const rows = Object.entries(units.data.units)
    .map(([id, r]) => ({ id, ...r }))
    .sort((a, b) => b.cases - a.cases)
    .slice(0, 15);
  const overall = units.data.overall;
  // [field, title, rates under this are flagged (none: a low whistle rate is no fault)]
  const metrics = [
    ["response_rate", "响应率（按时受理/报到）", 0.8],
    ["resolution_rate", "办结率（按时办结）", 0.8],
    ["satisfaction_rate", "满意率", 0.8],
    ["whistle_rate", "吹哨率", null],
  ];
  const C = window.TongxinCharts;
  const picker = h(
    "select",
    {
      id: "kpi-window",
      onchange: (e) => {
        sessionStorage.setItem("tongxin.console.window", e.target.value);
        route();
      },
    },
    [7, 30, 90].map((d) => h("option", { value: d, selected: d === days }, `近 ${d} 天`)),
  );
  const totals = TIERS.map((t) => `${t.label} ${daily.data.days.reduce((n, d) => n + d[t.key], 0)}`).join(" · ");
  paint(
    h("div", { class: "page-head" }, h("h1", {}, "绩效统计"), picker),
    h(
      "section",
      { class: "panel overall", id: "kpi-overall" },
      h("h2", {}, "总体"),
      h("div", { class: "tiles" }, h("div", { class: "tile" }, h("b", {}, String(overall.cases)), "案件"), metrics.map(([k, label]) => h("div", { class: "tile", "data-metric": k }, h("b", {}, C.pct(overall[k])), label.replace(/（.*）/, "")))),
    ),
    h(
      "section",
      { class: "panel", id: "kpi-daily" },
      h("h2", {}, "每日诉求量（按分级）"),
      h("div", { class: "legend" }, TIERS.map((t) => h("span", { class: `key tier-${t.key}` }, t.label))),
      h("div", { class: "scroll" }, C.stackedDays("每日诉求量", daily.data.days, TIERS)),
      h("p", { class: "hint", id: "daily-totals" }, totals),
    ),
    h(
      "div",
      { class: "kpi-grid", id: "kpi-units" },
      metrics.map(([k, label, warn]) =>
        h(
          "section",
          { class: "panel", "data-metric": k },
          h("h2", {}, label),
          rows.length
            ? C.rateBars(label, rows.map((r) => ({ label: r.name || r.id, value: r[k], note: `${r.cases} 件` })), warn)
            : h("p", { class: "empty" }, "暂无数据"),
        ),
      ),
    ),
  );
}

// --- start ------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", async () => {
  $("#signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("#token").value.trim().replace(/^Bearer\s+/i, "");
    $("#signin-error").replaceChildren();
    try {
      await signIn(token);
      $("#token").value = "";
    } catch (err) {
      state.token = null;
      $("#signin-error").replaceChildren(errorBox(err));
    }
  });
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = e.submitter || $("#login-form button");
    $("#signin-error").replaceChildren();
    button.disabled = true;
    try {
      await signInWithPassword($("#login-name").value.trim(), $("#login-password").value);
    } catch (err) {
      $("#signin-error").replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
      $("#login-password").value = "";
    }
  });
  $("#password-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if ($("#pw-new").value !== $("#pw-new2").value) {
      $("#signin-error").replaceChildren(
        h("div", { class: "error", role: "alert", "data-code": "mismatch" }, "两次输入的新密码不一致。"),
      );
      return;
    }
    $("#signin-error").replaceChildren();
    try {
      const body = { name: $("#pw-name").value, current_password: $("#pw-current").value, new_password: $("#pw-new").value };
      const r = await call("/v1/session/password", { method: "POST", body, auth: false });
      await startSession(r.data);
    } catch (err) {
      $("#signin-error").replaceChildren(errorBox(err));
    }
  });
  $("#signout").addEventListener("click", async () => {
    await endSession();
    signOut();
  });
  state.timer = setInterval(tick, 1000);
  const offered = offerOidc();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    try {
      await signIn(saved);
      return;
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("#signin-error").replaceChildren(errorBox(err));
    }
  } else if (await resumeSession()) {
    return;
  }
  await offered;
  showSignedOut();
});
