/*
 * The chat page's client: one WebSocket to ws(s)://host/chat/<room>/?username=<name>.
 *
 * - shows each broadcast line ({"type": "message", id, username, text, created}) and each
 *   announcement ({"type": "announce", text, created});
 * - sends the input's text as a plain text frame on Enter (the tutorial's protocol: the
 *   server stamps the username it took from the query string);
 * - shows the connection state in #state (data-state = connecting | open | waiting;
 *   data-opens counts the successful connects of this page);
 * - reconnects after any close with jittered exponential backoff (0.5 s doubling up to
 *   15 s, each wait drawn from [d/2, d] so a restarted server is not hit by every
 *   browser in the same millisecond);
 * - after every (re)connect asks /chat/<room>/history/?after=<last id> for the lines it
 *   missed while away, and drops duplicates by message id.
 */
(function () {
  "use strict";

  var BASE_DELAY_MS = 500;
  var MAX_DELAY_MS = 15000;

  var chat = document.getElementById("chat");
  if (!chat) { return; }
  var room = chat.dataset.room;
  var username = chat.dataset.username;
  var historyUrl = chat.dataset.historyUrl;
  var list = document.getElementById("messages");
  var form = document.getElementById("send-form");
  var input = document.getElementById("input");
  var sendButton = document.getElementById("send");
  var stateEl = document.getElementById("state");

  var socket = null;
  var attempts = 0;
  var retryTimer = null;
  var countdownTimer = null;
  var lastId = 0;
  var opens = 0;
  var seen = {};

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + "/chat/" + encodeURIComponent(room) +
      "/?username=" + encodeURIComponent(username);
  }

  function localTime(iso) {
    var when = iso ? new Date(iso) : new Date();
    if (isNaN(when.getTime())) { when = new Date(); }
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function setState(state, label) {
    stateEl.dataset.state = state;
    stateEl.textContent = label;
    document.body.dataset.connection = state;
    sendButton.disabled = state !== "open";
  }

  function scrollToEnd() {
    list.scrollTop = list.scrollHeight;
  }

  function removePlaceholder() {
    var empty = list.querySelector("li.empty");
    if (empty) { empty.parentNode.removeChild(empty); }
  }

  function makeItem(cls, data) {
    var li = document.createElement("li");
    li.className = cls;
    var time = document.createElement("time");
    time.dateTime = data.created || "";
    time.textContent = localTime(data.created);
    li.appendChild(time);
    var user = document.createElement("span");
    user.className = "user";
    user.textContent = data.username;
    li.appendChild(user);
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = data.text;
    li.appendChild(text);
    return li;
  }

  function addMessage(data) {
    var id = Number(data.id);
    if (!id || seen[id]) { return; }
    seen[id] = true;
    lastId = Math.max(lastId, id);
    var li = makeItem(data.username === username ? "msg mine" : "msg", data);
    li.dataset.id = String(id);
    removePlaceholder();
    // Keep id order when a history answer and live broadcasts interleave.
    var later = null;
    var items = list.querySelectorAll("li.msg");
    for (var i = items.length - 1; i >= 0; i--) {
      if (Number(items[i].dataset.id) > id) { later = items[i]; } else { break; }
    }
    list.insertBefore(li, later);
    scrollToEnd();
  }

  function addAnnouncement(data) {
    removePlaceholder();
    list.appendChild(makeItem("announce", { username: "notice", text: data.text, created: data.created }));
    scrollToEnd();
  }

  function fetchMissed() {
    var url = historyUrl + "?after=" + encodeURIComponent(String(lastId));
    return fetch(url, { headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { messages: [] }; })
      .then(function (body) { (body.messages || []).forEach(addMessage); })
      .catch(function () { /* the next reconnect asks again */ });
  }

  function onFrame(event) {
    var data;
    try {
      data = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (data.type === "announce") {
      addAnnouncement(data);
    } else if (data.type === "message") {
      addMessage(data);
    }
  }

  function scheduleReconnect() {
    var ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * Math.pow(2, attempts));
    var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    attempts += 1;
    var due = Date.now() + delay;
    var tick = function () {
      var left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setState("waiting", "offline · retrying in " + left + " s");
    };
    tick();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tick, 1000);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    if (socket && socket.readyState <= WebSocket.OPEN) { return; }
    setState("connecting", attempts ? "reconnecting…" : "connecting…");
    var ws = new WebSocket(socketUrl());
    socket = ws;
    ws.onopen = function () {
      attempts = 0;
      opens += 1;
      stateEl.dataset.opens = String(opens);
      setState("open", "connected");
      fetchMissed();
    };
    ws.onmessage = onFrame;
    ws.onclose = function () {
      if (socket !== ws) { return; }
      socket = null;
      scheduleReconnect();
    };
    // An error is always followed by a close event, which does the reconnecting.
    ws.onerror = function () {};
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) { return; }
    socket.send(text);
    input.value = "";
    input.focus();
  });

  // Coming back online is a good moment to retry without waiting out the backoff.
  window.addEventListener("online", function () {
    if (!socket) { attempts = 0; connect(); }
  });

  Array.prototype.forEach.call(list.querySelectorAll("li.msg"), function (li) {
    var id = Number(li.dataset.id);
    seen[id] = true;
    lastId = Math.max(lastId, id);
  });
  Array.prototype.forEach.call(list.querySelectorAll("time[datetime]"), function (el) {
    el.textContent = localTime(el.getAttribute("datetime"));
  });
  scrollToEnd();
  connect();
})();
