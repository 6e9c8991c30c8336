// Turnpike web chat: one WebSocket to /v1/ws (see PROTOCOL.md), one conversation at a time.
//
// What it guarantees a person: a reply streams in as it is made; after a network drop or a gateway restart
// the page reconnects and resumes from the last event it received, so no part of a reply is lost or shown
// twice; a message not yet accepted is sent again with the same message_id (the gateway answers it once).
//
// Credentials: the page never mints them. It takes a JWT from the URL fragment (#token=...), keeps it in
// sessionStorage for this tab, removes it from the address bar, and sends it as ?access_token= (browsers'
// WebSocket cannot set headers). In production the customer's backend issues the token and opens this page
// with it, or an embedding page stores it under "turnpike.token". All text from the server goes into the
// page through textContent, never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'turnpike.token';
  const CONVERSATION_KEY = 'turnpike.conversation';
  const LAST_EVENT_KEY = 'turnpike.last_event_id.';

  const $ = (id) => document.getElementById(id);
  const ui = {
    messages: $('messages'), connection: $('connection'), activity: $('activity'), error: $('error'),
    form: $('composer'), input: $('input'), send: $('send'), fresh: $('new-conversation'), signin: $('signin'),
  };

  // ---- identity and conversation ------------------------------------------------------------------------

  function takeToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const token = fragment.get('token');
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      // Out of the address bar, the history and any bookmark.
      history.replaceState(null, '', location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function randomId(prefix) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  const token = takeToken();
  let conversation = sessionStorage.getItem(CONVERSATION_KEY) || newConversationId();
  let lastEventId = sessionStorage.getItem(LAST_EVENT_KEY + conversation);

  function newConversationId() {
    const id = randomId('c-');
    sessionStorage.setItem(CONVERSATION_KEY, id);
    return id;
  }

  // ---- state of the conversation on screen --------------------------------------------------------------

  const outbox = new Map(); // message_id -> {text, li}: sent, not yet accepted
  const failed = new Map(); // message_id -> {text, li}: refused; the person may send it again
  const sentBy = new Map(); // turn_id -> li of the person's message
  const replies = new Map(); // turn_id -> {li, textEl, chunks: [], final}
  const waiting = new Map(); // turn_id -> 'waiting' | 'typing': accepted, reply not finished
  let holdUntil = 0; // quota or rate refusal: no sending before this time (ms since epoch)

  function item(kind, label) {
    const li = document.createElement('li');
    li.className = 'message ' + kind;
    const who = document.createElement('p');
    who.className = 'who';
    who.textContent = label;
    const text = document.createElement('p');
    text.className = 'text';
    li.append(who, text);
    ui.messages.append(li);
    li.scrollIntoView({ block: 'end' });
    return li;
  }

  function note(text) {
    const li = document.createElement('li');
    li.className = 'note';
    li.textContent = text;
    ui.messages.append(li);
    li.scrollIntoView({ block: 'end' });
  }

  function caption(li, text, state) {
    li.dataset.state = state;
    let el = li.querySelector('.caption');
    if (!el) {
      el = document.createElement('p');
      el.className = 'caption';
      li.append(el);
    }
    el.textContent = text;
  }

  function replyFor(turnId) {
    let reply = replies.get(turnId);
    if (!reply) {
      const li = item('bot', 'Assistant');
      li.setAttribute('aria-busy', 'true');
      reply = { li, textEl: li.querySelector('.text'), chunks: [], final: null };
      replies.set(turnId, reply);
    }
    return reply;
  }

  // A reply is its deltas in chunk_index order, then the final's own text; a chunk seen twice is one chunk.
  function render(reply) {
    let text = '';
    for (let i = 0; i < reply.chunks.length && reply.chunks[i] !== undefined; i++) text += reply.chunks[i];
    if (reply.final) text += reply.final.text || '';
    reply.textEl.textContent = text;
  }

  function citations(li, list) {
    if (!Array.isArray(list) || list.length === 0) return;
    const box = document.createElement('div');
    box.className = 'citations';
    const title = document.createElement('p');
    title.className = 'citations-title';
    title.id = randomId('src-');
    title.textContent = 'Sources';
    const ul = document.createElement('ul');
    ul.setAttribute('aria-labelledby', title.id);
    for (const c of list) {
      const entry = document.createElement('li');
      const source = document.createElement('span');
      source.className = 'source';
      source.textContent = c.source || '';
      entry.append(source);
      if (c.location) {
        const location = document.createElement('span');
        location.className = 'location';
        location.textContent = c.location;
        entry.append(' ', location);
      }
      if (c.snippet) {
        const snippet = document.createElement('q');
        snippet.className = 'snippet';
        snippet.textContent = c.snippet.length > 160 ? c.snippet.slice(0, 157) + '…' : c.snippet;
        entry.append(' ', snippet);
      }
      ul.append(entry);
    }
    box.append(title, ul);
    li.append(box);
  }

  const ENDINGS = {
    length: 'The reply was cut short.',
    handoff: 'You are being handed over to a person from our team.',
    handed_off: 'You are being handed over to a person from our team.',
    guardrail: 'This reply was stopped. A person from our team will take over.',
    incomplete: 'This reply broke off. A person from our team will take over.',
    refuse: 'The assistant cannot help with this message.',
    refused: 'The assistant cannot help with this message.',
    budget_exceeded: 'The assistant is not available right now.',
  };

  const STATUSES = {
    handed_off: 'You have been handed over to a person from our team.',
    agent_joined: 'A person from our team joined the conversation.',
    bot_resumed: 'You are back with the assistant.',
    forwarded_to_agent: 'Your message was passed to the person helping you.',
    refused: 'The assistant cannot help with this message.',
  };

  function showActivity() {
    const states = [...waiting.values()];
    ui.activity.textContent = states.includes('typing') ? 'Assistant is typing…'
      : states.length > 0 ? 'Waiting for a reply…' : '';
  }

  // ---- events from the gateway --------------------------------------------------------------------------

  function handle(ev) {
    if (ev.conversation_id && ev.conversation_id !== conversation) return;
    if (ev.id) {
      lastEventId = ev.id;
      sessionStorage.setItem(LAST_EVENT_KEY + conversation, ev.id);
    }
    switch (ev.type) {
      case 'accepted': return accepted(ev);
      case 'delta': {
        const reply = replyFor(ev.turn_id);
        reply.chunks[ev.chunk_index] = ev.text || '';
        render(reply);
        if (waiting.has(ev.turn_id)) waiting.set(ev.turn_id, 'typing');
        return showActivity();
      }
      case 'final': return final(ev);
      case 'status': return status(ev);
      case 'error': return error(ev);
      case 'resumed': return clearError('connection');
      default: return undefined; // later protocol versions may add types: ignore them
    }
  }

  function accepted(ev) {
    const pending = outbox.get(ev.message_id);
    outbox.delete(ev.message_id);
    if (pending) {
      caption(pending.li, '', 'sent');
      sentBy.set(ev.turn_id, pending.li);
    }
    if (!replies.get(ev.turn_id)?.final) waiting.set(ev.turn_id, waiting.get(ev.turn_id) || 'waiting');
    showActivity();
  }

  function final(ev) {
    const reply = replyFor(ev.turn_id);
    if (reply.final) return;
    reply.final = ev;
    render(reply);
    reply.li.setAttribute('aria-busy', 'false');
    reply.li.dataset.finish = ev.finish_reason || 'stop';
    // A person from the helpdesk wrote this one, not the assistant.
    if (ev.finish_reason === 'agent') {
      reply.li.classList.add('agent');
      reply.li.querySelector('.who').textContent = 'Support agent';
    }
    citations(reply.li, ev.citations);
    const ending = ENDINGS[ev.finish_reason];
    if (ending) caption(reply.li, ending, ev.finish_reason);
    waiting.delete(ev.turn_id);
    showActivity();
  }

  function status(ev) {
    if (ev.status === 'typing' || ev.status === 'accepted') {
      if (ev.status === 'typing' && !replies.get(ev.turn_id)?.final) waiting.set(ev.turn_id, 'typing');
      return showActivity();
    }
    if (ev.status === 'forwarded_to_agent' || ev.status === 'refused') waiting.delete(ev.turn_id);
    const mine = sentBy.get(ev.turn_id);
    if (ev.status === 'forwarded_to_agent' && mine) caption(mine, STATUSES.forwarded_to_agent, 'forwarded');
    else note(STATUSES[ev.status] || 'Status: ' + String(ev.status).replace(/_/g, ' '));
    return showActivity();
  }

  function error(ev) {
    const mine = ev.message_id && outbox.get(ev.message_id);
    if (mine) {
      outbox.delete(ev.message_id);
      failed.set(ev.message_id, mine);
      caption(mine.li, 'Not sent.', 'failed');
      const again = document.createElement('button');
      again.type = 'button';
      again.className = 'again';
      again.textContent = 'Send again';
      again.addEventListener('click', () => {
        again.remove();
        outbox.set(ev.message_id, failed.get(ev.message_id));
        failed.delete(ev.message_id);
        transmit(ev.message_id);
      });
      mine.li.append(again);
    }
    if (ev.code === 'quota_exceeded' || ev.code === 'too_many_messages') {
      holdUntil = Date.now() + (ev.retry_after_ms || 1000);
      const what = ev.code === 'too_many_messages' ? 'You are sending messages too fast.'
        : `The ${ev.window === 'day' ? 'daily' : 'per-minute'} message allowance ${ev.scope === 'tenant' ? 'of your organisation ' : ''}is used up.`;
      return countdown(what);
    }
    const text = {
      message_too_large: 'That message is too long. Please shorten it.',
      unavailable: 'The service did not answer. Your message was not sent: send it again.',
      events_expired: 'Part of the earlier conversation is no longer available.',
      too_many_conversations: 'Too many conversations are open in this window. Reload the page.',
    }[ev.code] || ev.message || 'Something went wrong.';
    return showError(text, ev.code);
  }

  function showError(text, code) {
    ui.error.textContent = text;
    ui.error.dataset.code = code || '';
    ui.error.hidden = false;
  }

  function clearError(code) {
    if (!code || ui.error.dataset.code === code) {
      ui.error.hidden = true;
      ui.error.textContent = '';
      ui.error.dataset.code = '';
    }
  }

  let countdownTimer = null;
  function countdown(what) {
    clearInterval(countdownTimer);
    const tick = () => {
      const left = Math.ceil((holdUntil - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(countdownTimer);
        ui.send.disabled = false;
        clearError('quota_exceeded');
        return;
      }
      ui.send.disabled = true;
      showError(`${what} Try again in ${left} s.`, 'quota_exceeded');
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  }

  // ---- the connection -----------------------------------------------------------------------------------

  let ws = null;
  let attempts = 0;
  let reconnectTimer = null;
  let idle = false; // closed by the server for idleness: reconnect when the person does something

  function setConnection(state, text) {
    ui.connection.dataset.state = state;
    ui.connection.textContent = text;
  }

  function connect() {
    if (!token) {
      ui.signin.hidden = false;
      ui.send.disabled = true;
      return setConnection('offline', 'Not signed in');
    }
    if (ws) return undefined;
    clearTimeout(reconnectTimer);
    idle = false;
    setConnection('connecting', attempts === 0 ? 'Connecting…' : 'Reconnecting…');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/v1/ws?access_token=${encodeURIComponent(token)}`);
    ws = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      attempts = 0;
      setConnection('online', 'Connected');
      // From the last event received ("0": from the start of this conversation), then live; nothing between
      // the drop and now is lost, nothing already shown comes twice.
      socket.send(JSON.stringify({ type: 'resume', conversation_id: conversation, last_event_id: lastEventId || '0' }));
      for (const id of outbox.keys()) transmit(id);
    };
    socket.onmessage = (e) => {
      if (socket !== ws) return;
      let ev;
      try { ev = JSON.parse(e.data); } catch { return; }
      handle(ev);
    };
    socket.onclose = (e) => {
      if (socket !== ws) return;
      ws = null;
      closed(e, opened);
    };
  }

  async function closed(e, opened) {
    if (e.code === 4000) {
      idle = true;
      return setConnection('offline', 'Disconnected while idle');
    }
    if (!opened) {
      // A refused upgrade looks like any network failure to a WebSocket: ask over HTTP what went wrong.
      const refusal = await probe();
      if (refusal) {
        setConnection('offline', 'Not signed in');
        return showError(refusal, 'auth');
      }
    }
    attempts += 1;
    const delay = Math.min(10000, 500 * 2 ** Math.min(attempts - 1, 5)) * (0.5 + Math.random() / 2);
    setConnection('connecting', 'Connection lost. Reconnecting…');
    reconnectTimer = setTimeout(connect, delay);
    return undefined;
  }

  // The reason for a refusal (401/403), or null when it was not one (network down, gateway restarting).
  async function probe() {
    const ctl = new AbortController();
    try {
      const res = await fetch(`/v1/sessions/${encodeURIComponent(conversation)}/events`, {
        headers: { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' },
        cache: 'no-store', signal: ctl.signal,
      });
      if (res.status !== 401 && res.status !== 403) return null;
      const body = await res.json().catch(() => ({}));
      return body.code === 'expired_credential' ? 'Your sign-in has expired. Reload the page from the site you came from.'
        : 'Your sign-in was refused (' + (body.code || res.status) + ').';
    } catch {
      return null;
    } finally {
      ctl.abort();
    }
  }

  function transmit(id) {
    const m = outbox.get(id);
    if (!m) return;
    caption(m.li, 'Sending…', 'sending');
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: 'message', conversation_id: conversation, text: m.text, message_id: id }));
    } else if (!ws) {
      connect(); // sends the outbox once open
    }
  }

  // ---- the person -----------------------------------------------------------------------------------------

  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.input.value.trim();
    if (!text || Date.now() < holdUntil) return;
    const id = randomId('m-');
    const li = item('user', 'You');
    li.querySelector('.text').textContent = text;
    outbox.set(id, { text, li });
    ui.input.value = '';
    ui.input.focus();
    transmit(id);
  });

  ui.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ui.form.requestSubmit();
    }
  });

  ui.input.addEventListener('focus', () => { if (idle) connect(); });

  ui.fresh.addEventListener('click', () => {
    conversation = newConversationId();
    lastEventId = null;
    for (const map of [outbox, failed, sentBy, replies, waiting]) map.clear();
    ui.messages.replaceChildren();
    showActivity();
    clearError();
    // A fresh connection for the fresh conversation: the old one's events stop here.
    const old = ws;
    ws = null;
    if (old) old.close(1000, 'new conversation');
    attempts = 0;
    connect();
    ui.input.focus();
  });

  window.addEventListener('online', () => { if (!ws) { attempts = 0; connect(); } });
  window.addEventListener('offline', () => setConnection('offline', 'Offline'));

  connect();
})();
