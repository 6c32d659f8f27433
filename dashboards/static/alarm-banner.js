/* The alarm banner of every staff page (issue 15 §2; dashboards/banner_view.py renders it).
 *
 * The banner arrives on the page's own live stream (app.js re-dispatches it as a "steward:banner" event); a page
 * without a stream opens /live/alarm-banner instead. Each payload carries a key (the banner's change mark), the
 * fragment, the alarm ids in it (critical ones apart) and the viewer's mute setting.
 *
 * Sound: an alarm this tab has not announced yet plays alarm.wav once; while a critical one stays
 * unacknowledged it plays again every data-repeat-ms. Mute is per account (POST /alarms/banner-prefs) and
 * silences both. 确认 and 消除 post the existing alarm actions in place (header X-Steward-In-Place: 1): no page
 * load, and a half-typed clearing reason is never redrawn away by an update arriving meanwhile.
 */
(function () {
  "use strict";

  const root = document.getElementById("alarm-banner");
  if (!root) return;
  const sound = document.getElementById("alarm-sound");
  const REPEAT_MS = Number(root.dataset.repeatMs) || 4000;
  const HEARD_KEY = "steward.alarmBanner.heard"; // per tab: moving between pages does not replay a heard alarm
  const HEARD_KEPT = 200;

  let heard = new Set(loadHeard());
  let key = null;
  let muted = false;
  let critical = [];
  let repeat = null;
  let blocked = false;
  let pending = null; // a redraw waiting until the user finishes typing a reason

  function loadHeard() {
    try {
      return JSON.parse(sessionStorage.getItem(HEARD_KEY) || "[]");
    } catch (e) {
      return [];
    }
  }

  function saveHeard() {
    try {
      sessionStorage.setItem(HEARD_KEY, JSON.stringify(Array.from(heard).slice(-HEARD_KEPT)));
    } catch (e) {
      /* private mode: the tab simply announces again after a reload */
    }
  }

  function play() {
    if (muted || !sound) return;
    try {
      sound.currentTime = 0;
    } catch (e) {
      /* not loaded yet: play from wherever it is */
    }
    const started = sound.play();
    if (started && started.catch) {
      started.then(
        () => setBlocked(false),
        () => setBlocked(true) // autoplay refused until the user interacts with the page
      );
    }
  }

  function stopSound() {
    if (sound && !sound.paused) sound.pause();
  }

  function setBlocked(value) {
    blocked = value;
    const button = root.querySelector(".banner-unblock");
    if (button) button.hidden = !blocked || muted;
  }

  function schedule() {
    const want = critical.length > 0 && !muted;
    if (want && repeat === null) repeat = setInterval(play, REPEAT_MS);
    if (!want && repeat !== null) {
      clearInterval(repeat);
      repeat = null;
    }
  }

  function syncMute() {
    const button = root.querySelector(".banner-mute");
    if (button) {
      button.dataset.muted = String(muted);
      button.setAttribute("aria-pressed", String(muted));
      button.textContent = muted ? root.dataset.unmute : root.dataset.mute;
    }
    setBlocked(blocked);
  }

  function busy() {
    const active = document.activeElement;
    if (active && root.contains(active) && active.tagName === "INPUT") return true;
    return Array.from(root.querySelectorAll("input[name=reason]")).some((el) => el.value.trim() !== "");
  }

  function redraw(html) {
    if (busy()) {
      pending = html;
      return;
    }
    pending = null;
    root.innerHTML = html;
    root.hidden = html.trim() === "";
    syncMute();
  }

  function apply(banner) {
    if (!banner || banner.key === key) return;
    key = banner.key;
    muted = !!banner.muted;
    const fresh = banner.ids.filter((id) => !heard.has(id));
    fresh.forEach((id) => heard.add(id));
    if (fresh.length) saveHeard();
    critical = banner.critical.slice();
    redraw(banner.html);
    if (muted) stopSound();
    else if (fresh.length) play();
    schedule();
  }

  function forget(id) {
    critical = critical.filter((c) => c !== id);
    schedule();
    if (!critical.length) stopSound();
    const item = root.querySelector('.banner-item[data-alarm="' + id + '"]');
    if (item) item.remove();
    if (!root.querySelector(".banner-item")) root.hidden = true;
    key = null; // the stream's next banner redraws whatever is left
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Steward-In-Place": "1" },
    });
  }

  root.addEventListener("submit", (ev) => {
    const form = ev.target.closest("form");
    if (!form) return;
    const item = form.closest(".banner-item");
    if (!item) return;
    ev.preventDefault();
    const id = Number(item.dataset.alarm);
    const buttons = item.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    post(form.action, new URLSearchParams(new FormData(form)))
      .then((r) => {
        if (r.ok) {
          forget(id);
          return null;
        }
        return r.text().then((text) => {
          let note = item.querySelector(".banner-error");
          if (!note) {
            note = document.createElement("span");
            note.className = "banner-error";
            item.appendChild(note);
          }
          note.textContent = text || String(r.status);
        });
      })
      .catch(() => null)
      .finally(() => {
        buttons.forEach((b) => (b.disabled = false));
        if (pending !== null && !busy()) redraw(pending);
      });
  });

  root.addEventListener("click", (ev) => {
    const mute = ev.target.closest(".banner-mute");
    if (mute) {
      muted = !muted;
      syncMute();
      if (muted) stopSound();
      schedule();
      post("/alarms/banner-prefs", new URLSearchParams({ muted: muted ? "1" : "0" })).catch(() => null);
      return;
    }
    if (ev.target.closest(".banner-unblock")) play(); // a click is the gesture the browser waited for
  });

  root.addEventListener("focusout", () => {
    setTimeout(() => {
      if (pending !== null && !busy()) redraw(pending);
    }, 0);
  });

  document.addEventListener("steward:banner", (ev) => apply(ev.detail));

  // A page whose script streams already carries the banner; any other page asks for it alone.
  if (document.documentElement.dataset.liveBanner === "page" || !window.EventSource) return;
  let failures = 0;
  function connect() {
    const source = new EventSource(root.dataset.live);
    source.addEventListener("update", (ev) => {
      failures = 0;
      const data = JSON.parse(ev.data);
      if (data.banner) apply(data.banner);
    });
    source.addEventListener("expired", () => source.close()); // the page's next request goes to the login
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        failures += 1;
        if (failures <= 5) setTimeout(connect, 3000 * failures);
      }
    };
  }
  connect();
})();
