// The e-card web page: card face, a QR code that renews itself before it expires, account.
// The only credential is the link itself (this page's path); no token is ever stored here.
"use strict";
(function () {
  const base = window.location.pathname.replace(/\/+$/, "");
  const $ = (id) => document.getElementById(id);
  const STATUS = { active: "正常 active", suspended: "挂失/暂停 suspended", revoked: "注销 revoked" };
  let deadline = 0;
  let timer = null;

  function showError(text) {
    const el = $("error");
    el.textContent = text;
    el.hidden = false;
  }

  async function loadCard() {
    const resp = await fetch(base + "/data", { credentials: "omit", cache: "no-store" });
    if (!resp.ok) { expired(); return; }
    const d = await resp.json();
    $("name").textContent = d.name_masked;
    $("number").textContent = d.id_number_masked;
    $("region").textContent = (d.region_name || "") + " " + d.region_code;
    $("status").textContent = STATUS[d.status] || d.status;
    $("level").textContent = d.sign_level === 2 ? "2 · 支付 payment" : "1 · 身份 identity";
    if (d.account) {
      $("balance").textContent = d.account.balance;
      const list = $("recent");
      list.replaceChildren();
      for (const s of d.recent || []) {
        const li = document.createElement("li");
        const left = document.createElement("span");
        left.textContent = s.settled_at.slice(0, 10) + " " + s.hospital_name;
        const right = document.createElement("span");
        right.textContent = (s.refunded ? "已退 " : "") + s.total;
        li.append(left, right);
        list.append(li);
      }
      $("account").hidden = false;
    }
  }

  function expired() {
    clearTimeout(timer);
    $("qr").removeAttribute("src");
    $("countdown").textContent = "--";
    showError("链接已过期，请回到应用重新打开 · link expired, reopen the e-card in the app");
  }

  function tick() {
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    $("countdown").textContent = String(left);
    if (left <= 0) { refresh(); return; }
    timer = setTimeout(tick, 250);
  }

  async function refresh() {
    clearTimeout(timer);
    let resp;
    try {
      resp = await fetch(base + "/qrcode", { method: "POST", credentials: "omit", cache: "no-store" });
    } catch (e) {
      showError("网络错误，正在重试 · network error, retrying");
      timer = setTimeout(refresh, 2000);
      return;
    }
    if (resp.status === 410 || resp.status === 404) { expired(); return; }
    if (!resp.ok) {
      const wait = Number(resp.headers.get("Retry-After") || "3");
      showError("暂时无法刷新 · cannot refresh now (" + resp.status + ")");
      timer = setTimeout(refresh, Math.min(wait, 30) * 1000);
      return;
    }
    const qr = await resp.json();
    $("error").hidden = true;
    const img = $("qr");
    img.src = "data:image/png;base64," + qr.image;
    img.dataset.expiresAt = qr.expires_at;
    // Server-relative timing (refresh_in_seconds), so a wrong phone clock does not matter.
    deadline = Date.now() + qr.refresh_in_seconds * 1000;
    tick();
  }

  document.addEventListener("DOMContentLoaded", () => {
    loadCard().catch(() => showError("加载失败 · failed to load"));
    refresh();
  });
})();
