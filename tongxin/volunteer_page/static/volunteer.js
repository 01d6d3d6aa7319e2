// 同心 volunteer page: sign in, answer offers before their deadline, complete tasks with
// hours, see my hours, squads and care visits. Sign-in is the accounts' session cookie
// (/v1/session, HttpOnly: this script never sees it); the volunteer service is reached through
// the console's same-origin proxy, and every write carries the session's CSRF token.
"use strict";

const REFRESH_MS = 20000;
const VOLUNTEER = "/console/api/volunteer";
// zh-CN names from labels.js (LABELS, written from tongxin.contracts.enums)
const SKILL_NAMES = LABELS.skill;
const CARE_NAMES = LABELS.care;
const VISIT_STATUS = { open: "待走访", overdue: "已逾期", completed: "已走访", cancelled: "已取消" };
const EXPIRED_TEXT = "登录已过期，请重新登录。";
const NETWORK_TEXT = "网络连接失败，请检查网络后再试。";
// a refusal's code → what the volunteer reads
const PROBLEMS = {
  offer_expired: "已超过接受截止时间，任务已转给其他志愿者。",
  offer_closed: "该任务已不再等待您的回应。",
  task_not_offered: "该任务已不在待接受状态。",
  task_not_accepted: "该任务尚未接受，不能登记完成。",
  not_your_task: "这不是分配给您的任务。",
  not_your_visit: "这不是分配给您的走访。",
  visit_closed: "该走访已登记或已取消。",
  busy: "系统繁忙，请稍后再试。",
  upstream_unavailable: "系统繁忙，请稍后再试。",
  upstream_timeout: "系统繁忙，请稍后再试。",
  forbidden: "没有权限进行此操作。",
};
const FIELD_NAMES = { hours: "服务时长", note: "情况说明", reason: "原因" };

const $ = (sel) => document.querySelector(sel);

const state = {
  me: null, // {sub, display, role}
  csrf: null,
  profile: null, // the volunteer's registry record
  categories: {},
  places: {},
  shown: {}, // list name → signature of what is painted (a refresh keeps forms being filled)
  refreshTimer: null,
  tickTimer: null,
  seq: 0,
};

// --- HTTP ------------------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, data, retryAfter) {
    const e = (data && data.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || (status === 0 ? "network" : "error");
    this.details = e.details;
    this.retryAfter = retryAfter;
  }
}

// the answer's JSON; a Problem when it is not a success (status 0: no connection)
async function call(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["x-csrf-token"] = state.csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (e) {
    throw new Problem(0, null, null);
  }
  let data = null;
  try {
    const text = await res.text();
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!res.ok) throw new Problem(res.status, data, res.headers.get("retry-after"));
  return data;
}

// a call to the volunteer service as the signed-in volunteer; an ended session signs out
async function vol(method, path, body) {
  try {
    return await call(method, VOLUNTEER + path, body);
  } catch (err) {
    if (state.me && (err.status === 401 || err.code === "csrf")) expired();
    throw err;
  }
}

function problemText(err) {
  if (err.status === 0) return NETWORK_TEXT;
  if (err.status === 401) return EXPIRED_TEXT;
  if (err.code === "validation_error" && Array.isArray(err.details) && err.details.length) {
    return err.details
      .map((d) => {
        const loc = d.loc || [];
        const field = FIELD_NAMES[loc[loc.length - 1]] || "";
        return field ? `${field}：${d.msg || "不正确"}` : d.msg || "填写内容不正确";
      })
      .join("；");
  }
  if (PROBLEMS[err.code]) return PROBLEMS[err.code];
  if (err.status >= 500) return "系统繁忙，请稍后再试。";
  return err.message || "操作未成功，请稍后再试。";
}

function retrySeconds(err) {
  const n = parseInt(err.retryAfter || "", 10);
  return Number.isFinite(n) && n > 0 ? n : 60;
}

function signInProblemText(err) {
  if (err.status === 0) return NETWORK_TEXT;
  if (err.status === 401) return "用户名或密码错误。";
  if (err.status === 429) {
    const s = retrySeconds(err);
    return `尝试次数过多，请 ${s >= 120 ? `${Math.ceil(s / 60)} 分钟` : `${s} 秒`}后再试。`;
  }
  if (err.code === "account_disabled") return "账号已停用，请联系社区工作人员。";
  if (err.code === "cross_site") return "请直接打开本页面登录。";
  if (err.code === "weak_password") return err.message;
  if (err.status === 501) return "本系统暂不支持密码登录，请联系社区工作人员。";
  return problemText(err);
}

// --- small DOM helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

// replace a node's children, leaving out the absent ones
function fill(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

function message(box, text, kind = "error", code = "") {
  if (!text) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(el("p", { class: kind, "data-code": code || null, text }));
}

function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleString("zh-CN", {
    timeZone: "Asia/Shanghai",
    month: "numeric",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  });
}

function hoursText(h) {
  const n = Number(h) || 0;
  return `${Math.round(n * 100) / 100} 小时`;
}

function place(task) {
  const parts = [task.community, task.compound].filter(Boolean).map((id) => state.places[id] || id);
  return parts.join(" · ") || "—";
}

function skillNames(list) {
  return (list || []).map((s) => SKILL_NAMES[s] || s).join("、");
}

// --- session -----------------------------------------------------------------------------------

function showSignIn(text, code) {
  stopTimers();
  state.seq++;
  $("#home-view").hidden = true;
  $("#signin-view").hidden = false;
  $("#login-form").hidden = false;
  $("#password-form").hidden = true;
  $("#whoami").hidden = true;
  $("#signout").hidden = !state.me;
  for (const id of ["#login-password", "#pw-current", "#pw-new", "#pw-new2"]) $(id).value = "";
  message($("#signin-message"), text || "", "error", code);
}

function expired() {
  state.me = null;
  state.csrf = null;
  state.profile = null;
  showSignIn(EXPIRED_TEXT, "expired");
}

// a session answer (POST /v1/session, /v1/session/password, GET /v1/session)
async function startSession(session) {
  state.csrf = session.csrf_token;
  state.me = { sub: session.name, display: session.display_name, role: session.role };
  if (session.role !== "volunteer") {
    showSignIn("该账号不是志愿者账号。工作人员请使用工作台（/console/）。", "not_volunteer");
    $("#signout").hidden = false;
    return;
  }
  $("#signin-view").hidden = true;
  $("#home-view").hidden = false;
  const who = $("#whoami");
  who.textContent = session.display_name || session.name;
  who.hidden = false;
  $("#signout").hidden = false;
  state.shown = {};
  await loadReference();
  await refresh();
  startTimers();
}

async function resumeSession() {
  let session;
  try {
    session = await call("GET", "/v1/session");
  } catch (err) {
    showSignIn(err.status === 0 ? NETWORK_TEXT : "");
    return;
  }
  await startSession(session);
}

async function signOut() {
  try {
    await call("DELETE", "/v1/session");
  } catch (e) {
    // offline: the cookie expires by itself
  }
  state.me = null;
  state.csrf = null;
  state.profile = null;
  showSignIn("已退出登录。", "signed_out");
  $("#signin-message p").className = "notice";
}

async function loadReference() {
  // the catalogue and the places are public (intake); names only, for the cards
  try {
    const [cats, communities] = await Promise.all([call("GET", "/v1/categories"), call("GET", "/v1/compounds")]);
    for (const c of cats) state.categories[c.code] = c.name;
    for (const c of communities) {
      state.places[c.id] = c.name;
      for (const x of c.compounds || []) state.places[x.id] = x.name;
    }
  } catch (e) {
    // the cards then show codes instead of names
  }
}

// --- what the volunteer sees -----------------------------------------------------------------

async function refresh() {
  if (!state.me || state.me.role !== "volunteer") return;
  const seq = ++state.seq;
  const me = encodeURIComponent(state.me.sub);
  const box = $("#home-message");
  try {
    const [profile, tasks, hours, squads, visits] = await Promise.all([
      vol("GET", `/v1/volunteers/${me}`),
      vol("GET", "/v1/tasks?limit=100"),
      vol("GET", `/v1/volunteers/${me}/hours`),
      vol("GET", "/v1/squads"),
      vol("GET", "/v1/care-visits?limit=100"),
    ]);
    if (seq !== state.seq || !state.me) return;
    state.profile = profile;
    if (box.dataset.kind === "load") message(box, "");
    paintOffers(tasks.filter((t) => t.status === "offered" && t.volunteer_id === state.me.sub));
    paintAccepted(tasks.filter((t) => t.status === "accepted" && t.volunteer_id === state.me.sub));
    paintDone(tasks.filter((t) => t.status === "completed").slice(0, 5));
    paintVisits(visits.filter((v) => v.status === "open" || v.status === "overdue"));
    paintHours(hours);
    paintSquads(squads, profile);
    $("#refreshed").textContent = `更新于 ${formatTime(new Date().toISOString())}`;
    tick();
  } catch (err) {
    if (!state.me || seq !== state.seq) return;
    message(box, `${problemText(err)}（稍后自动重试）`, "error", err.code);
    box.dataset.kind = "load";
  }
}

// repaint a list only when what it shows changed, so a form being filled survives a refresh
function paintList(name, items, signature, render, empty) {
  const sig = items.map(signature).join("|");
  const count = $(`#${name}-count`);
  if (count) count.textContent = items.length ? `（${items.length}）` : "";
  if (state.shown[name] === sig) return;
  state.shown[name] = sig;
  const box = $(`#${name}`);
  box.replaceChildren(...(items.length ? items.map(render) : [el("p", { class: "empty", text: empty })]));
}

function taskHead(task) {
  return [
    el("h3", { text: state.categories[task.category] || task.category }),
    el(
      "dl",
      { class: "facts" },
      el("dt", { text: "地点" }),
      el("dd", { text: place(task) }),
      el("dt", { text: "所需技能" }),
      el("dd", { text: skillNames(task.skills) || "—" }),
      el("dt", { text: "诉求编号" }),
      el("dd", { class: "request-id", text: task.request_id }),
      task.need_end ? el("dt", { text: "需在此前完成" }) : null,
      task.need_end ? el("dd", { text: formatTime(task.need_end) }) : null,
    ),
  ];
}

function paintOffers(tasks) {
  paintList("offers", tasks, (t) => `${t.id}:${t.attempt}`, offerCard, "暂时没有待回应的任务。");
}

function offerCard(task) {
  const card = el("article", { class: "card offer", dataset: { task: task.id } });
  const countdown = el("p", { class: "countdown", dataset: { acceptBy: task.accept_by || "" } });
  const status = el("div", { class: "card-message", role: "status" });
  const accept = el("button", { type: "button", class: "primary accept", text: "接受" });
  const decline = el("button", { type: "button", class: "secondary decline", text: "婉拒" });
  const reasonId = `reason-${task.id}`;
  const reason = el("textarea", { id: reasonId, class: "reason", rows: "2", maxlength: "500", placeholder: "例如：这段时间不在社区" });
  const confirm = el("button", { type: "button", class: "secondary confirm-decline", text: "确认婉拒" });
  const declineForm = el(
    "div",
    { class: "decline-form", hidden: true },
    el("label", { for: reasonId, text: "婉拒原因（选填）" }),
    reason,
    confirm,
  );
  card.append(...taskHead(task), countdown, el("div", { class: "actions" }, accept, decline), declineForm, status);
  accept.addEventListener("click", () =>
    answer(card, status, [accept, decline, confirm], "accept", undefined, "已接受，请按时提供服务。"),
  );
  decline.addEventListener("click", () => {
    declineForm.hidden = !declineForm.hidden;
    if (!declineForm.hidden) reason.focus();
  });
  confirm.addEventListener("click", () => {
    const text = reason.value.trim();
    answer(card, status, [accept, decline, confirm], "decline", text ? { reason: text } : {}, "已婉拒，任务将转给其他志愿者。");
  });
  return card;
}

function paintAccepted(tasks) {
  paintList("accepted", tasks, (t) => t.id, acceptedCard, "没有进行中的任务。");
}

function acceptedCard(task) {
  const card = el("article", { class: "card accepted", dataset: { task: task.id } });
  const hoursId = `hours-${task.id}`;
  const noteId = `note-${task.id}`;
  const hours = el("input", { id: hoursId, class: "hours", type: "number", inputmode: "decimal", min: "0.5", max: "24", step: "0.5", value: "1" });
  const note = el("textarea", { id: noteId, class: "note", rows: "3", maxlength: "500", placeholder: "服务了什么、对方情况如何" });
  const done = el("button", { type: "button", class: "primary complete", text: "登记完成" });
  const status = el("div", { class: "card-message", role: "status" });
  card.append(
    ...taskHead(task),
    el("p", { class: "small", text: task.accepted_at ? `接受于 ${formatTime(task.accepted_at)}` : "" }),
    el(
      "div",
      { class: "complete-form" },
      el("div", { class: "field" }, el("label", { for: hoursId, text: "服务时长（小时）" }), hours),
      el("div", { class: "field" }, el("label", { for: noteId, text: "情况说明" }), note),
      done,
    ),
    status,
  );
  done.addEventListener("click", () => {
    const h = Number(hours.value);
    if (!Number.isFinite(h) || h <= 0 || h > 24) {
      message(status, "服务时长需大于 0 且不超过 24 小时。", "error", "hours");
      hours.focus();
      return;
    }
    const body = { hours: h };
    if (note.value.trim()) body.note = note.value.trim();
    answer(card, status, [done], "complete", body, `已登记完成，服务时长 ${hoursText(h)}。谢谢您！`);
  });
  return card;
}

// what was just done, at the top of the page until the next thing is (a refresh keeps it)
function announce(text, code) {
  const box = $("#home-message");
  message(box, text, "ok", code);
  box.dataset.kind = "done";
}

// accept / decline / complete one task, then show the outcome and refresh the lists
async function answer(card, status, buttons, action, body, okText) {
  for (const b of buttons) b.disabled = true;
  message(status, "正在提交…", "notice");
  try {
    await vol("POST", `/v1/tasks/${encodeURIComponent(card.dataset.task)}/${action}`, body);
  } catch (err) {
    if (!state.me) return;
    message(status, problemText(err), "error", err.code);
    for (const b of buttons) b.disabled = false;
    if (err.status === 409) setTimeout(refresh, 2500);
    return;
  }
  announce(okText, action);
  await refresh();
}

function paintDone(tasks) {
  paintList("done", tasks, (t) => t.id, doneCard, "还没有完成的任务。");
}

function doneCard(task) {
  return el(
    "article",
    { class: "card done", dataset: { task: task.id } },
    el("h3", { text: state.categories[task.category] || task.category }),
    el("p", { class: "small", text: `${place(task)} · ${formatTime(task.completed_at)} · ${hoursText(task.hours)}` }),
    task.note ? el("p", { class: "small", text: task.note }) : null,
  );
}

function paintVisits(visits) {
  paintList("visits", visits, (v) => `${v.id}:${v.status}`, visitCard, "没有待走访的关爱对象。");
}

function visitCard(visit) {
  const card = el("article", { class: `card visit ${visit.status}`, dataset: { visit: visit.id } });
  const hoursId = `vh-${visit.id}`;
  const hours = el("input", { id: hoursId, class: "hours", type: "number", inputmode: "decimal", min: "0.5", max: "24", step: "0.5", value: "1" });
  const noteId = `vn-${visit.id}`;
  const note = el("textarea", { id: noteId, class: "note", rows: "2", maxlength: "500", placeholder: "老人近况、需要帮助的事" });
  const done = el("button", { type: "button", class: "primary record", text: "登记已走访" });
  const status = el("div", { class: "card-message", role: "status" });
  card.append(
    el("h3", { text: `${CARE_NAMES[visit.care_type] || visit.care_type} · 第 ${visit.seq} 次走访` }),
    el(
      "dl",
      { class: "facts" },
      el("dt", { text: "地点" }),
      el("dd", { text: place(visit) }),
      el("dt", { text: "应走访" }),
      el("dd", { text: `${formatTime(visit.due_at)} 起，${formatTime(visit.deadline)} 前` }),
      el("dt", { text: "状态" }),
      el("dd", { class: "visit-status", text: VISIT_STATUS[visit.status] || visit.status }),
    ),
    el("div", { class: "field" }, el("label", { for: hoursId, text: "走访时长（小时）" }), hours),
    el("div", { class: "field" }, el("label", { for: noteId, text: "走访情况（仅工作人员可见）" }), note),
    done,
    status,
  );
  done.addEventListener("click", async () => {
    const h = Number(hours.value);
    if (!Number.isFinite(h) || h <= 0 || h > 24) {
      message(status, "走访时长需大于 0 且不超过 24 小时。", "error", "hours");
      return;
    }
    done.disabled = true;
    try {
      const body = { hours: h };
      if (note.value.trim()) body.note = note.value.trim();
      await vol("POST", `/v1/care-visits/${encodeURIComponent(visit.id)}/record`, body);
    } catch (err) {
      if (!state.me) return;
      message(status, problemText(err), "error", err.code);
      done.disabled = false;
      return;
    }
    announce("走访已登记，谢谢您！", "record");
    await refresh();
  });
  return card;
}

function paintHours(h) {
  const bySkill = Object.entries(h.by_skill || {});
  fill(
    $("#hours"),
    el(
      "div",
      { class: "stats" },
      el("div", { class: "stat" }, el("strong", { id: "total-hours", text: hoursText(h.total_hours) }), el("span", { text: "累计服务" })),
      el("div", { class: "stat" }, el("strong", { text: String(h.completed || 0) }), el("span", { text: "完成次数" })),
      el("div", { class: "stat" }, el("strong", { text: hoursText(h.recent_hours) }), el("span", { text: `近 ${h.window_days || 30} 天` })),
    ),
    bySkill.length
      ? el("p", { class: "small", text: `按技能：${bySkill.map(([k, v]) => `${SKILL_NAMES[k] || k} ${hoursText(v)}`).join("，")}` })
      : null,
  );
}

function paintSquads(squads, profile) {
  const mine = squads.filter((s) => (profile.skills || []).includes(s.skill));
  const box = $("#squads");
  const items = mine.map((s) =>
    el(
      "li",
      { dataset: { squad: s.id } },
      el("strong", { text: s.name }),
      ` · ${SKILL_NAMES[s.skill] || s.skill} · ${s.member_count} 人`,
      s.captain_id === profile.id ? el("span", { class: "badge", text: "队长" }) : null,
    ),
  );
  fill(
    box,
    el("p", { class: "small", text: `我的技能：${skillNames(profile.skills) || "—"}；所在：${place(profile)}` }),
    items.length ? el("ul", { class: "squads" }, ...items) : el("p", { class: "empty", text: "暂未编入小分队。" }),
  );
}

// --- the accept-by countdown -------------------------------------------------------------------

function remainingText(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h} 小时 ${m} 分`;
  return `${m} 分 ${String(sec).padStart(2, "0")} 秒`;
}

function tick() {
  const now = Date.now();
  for (const node of document.querySelectorAll(".countdown")) {
    const by = Date.parse(node.dataset.acceptBy || "");
    if (Number.isNaN(by)) {
      node.textContent = "";
      continue;
    }
    const left = by - now;
    const card = node.closest(".card");
    if (left <= 0) {
      node.textContent = `已过接受截止时间（${formatTime(node.dataset.acceptBy)}）`;
      node.classList.add("late");
      for (const b of card.querySelectorAll("button")) b.disabled = true;
    } else {
      node.textContent = `请在 ${remainingText(left)}内回应（${formatTime(node.dataset.acceptBy)} 截止）`;
      node.classList.toggle("soon", left < 5 * 60 * 1000);
    }
  }
}

function startTimers() {
  stopTimers();
  state.tickTimer = setInterval(tick, 1000);
  state.refreshTimer = setInterval(refresh, REFRESH_MS);
}

function stopTimers() {
  clearInterval(state.tickTimer);
  clearInterval(state.refreshTimer);
  state.tickTimer = null;
  state.refreshTimer = null;
}

// --- wiring ------------------------------------------------------------------------------------

function init() {
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("#login-name").value.trim();
    const password = $("#login-password").value;
    const box = $("#signin-message");
    if (!name || !password) {
      message(box, "请输入用户名和密码。", "error", "missing");
      return;
    }
    const button = $("#login-form button[type=submit]");
    button.disabled = true;
    message(box, "");
    try {
      await startSession(await call("POST", "/v1/session", { name, password }));
    } catch (err) {
      if (err.code === "password_change_required") {
        $("#login-form").hidden = true;
        $("#password-form").hidden = false;
        $("#pw-name").value = name;
        $("#pw-current").value = password;
        $("#pw-new").focus();
      } else {
        message(box, signInProblemText(err), "error", err.code);
      }
    } finally {
      button.disabled = false;
      $("#login-password").value = "";
    }
  });
  $("#password-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const box = $("#signin-message");
    if ($("#pw-new").value !== $("#pw-new2").value) {
      message(box, "两次输入的新密码不一致。", "error", "mismatch");
      return;
    }
    message(box, "");
    const body = { name: $("#pw-name").value, current_password: $("#pw-current").value, new_password: $("#pw-new").value };
    try {
      await startSession(await call("POST", "/v1/session/password", body));
    } catch (err) {
      message(box, signInProblemText(err), "error", err.code);
    }
  });
  $("#signout").addEventListener("click", signOut);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.me) refresh();
  });
  resumeSession();
}

init();
