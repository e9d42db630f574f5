// The chat page of `minicpmo serve`: plain DOM, no dependencies. Model output is only ever placed
// with textContent / createTextNode (the Markdown renderer builds elements), never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const DEFAULTS = { system: "", temperature: 0.7, top_p: 0.8, top_k: 100, repetition_penalty: 1.05, max_tokens: 1024,
                     seed: "", voice: "default", silence_ms: 800, api_key: "", theme: "auto", speak: false };
  const NUMERIC = ["temperature", "top_p", "top_k", "repetition_penalty", "max_tokens", "silence_ms"];
  const store = { conversations: "minicpmo.conversations", settings: "minicpmo.settings", current: "minicpmo.current" };

  let conversations = [];
  let current = null;          // the open conversation
  let settings = { ...DEFAULTS };
  let attachments = [];        // {kind: "image"|"audio", name, url (data: URL), seconds?}
  let controller = null;       // the running request's AbortController
  const audioOut = { ctx: null, next: 0, sources: [] };
  // what tests (and curious users) can read
  const hooks = window.minicpmo = { scheduledSamples: 0, requests: 0, busy: false, interruptions: 0 };

  // ---- storage ------------------------------------------------------------------------------------

  function load() {
    try { conversations = JSON.parse(localStorage.getItem(store.conversations) || "[]"); } catch { conversations = []; }
    try { settings = { ...DEFAULTS, ...JSON.parse(localStorage.getItem(store.settings) || "{}") }; } catch { settings = { ...DEFAULTS }; }
    if (!Array.isArray(conversations)) conversations = [];
    current = conversations.find((c) => c.id === localStorage.getItem(store.current)) || conversations[0] || null;
  }

  // Saves everything; when the browser's quota is full, older conversations lose their media first.
  function save() {
    localStorage.setItem(store.settings, JSON.stringify(settings));
    if (current) localStorage.setItem(store.current, current.id);
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        // blob: URLs of spoken answers die with the page: they are not kept
        localStorage.setItem(store.conversations, JSON.stringify(conversations, (k, v) => (k === "audioURL" ? undefined : v)));
        return;
      } catch (e) {
        const victim = conversations.slice().reverse().find((c) => c.messages.some((m) => (m.media || []).some((x) => x.url)));
        if (!victim) { showError("The browser's storage is full: this conversation will not survive a reload."); return; }
        for (const m of victim.messages) for (const x of m.media || []) { delete x.url; x.dropped = true; }
      }
    }
  }

  function newConversation() {
    stop();  // an answer streams into the conversation it was asked in, or not at all
    current = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 7), title: "New chat", messages: [] };
    conversations.unshift(current);
    save();
    renderAll();
  }

  // ---- Markdown, safely -----------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  // Inline spans: `code`, **bold**, *italic*, [text](http…) links; everything else stays text.
  function inline(text, parent) {
    const pattern = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*)|(\[[^\]\n]+\]\((https?:\/\/[^\s)]+)\))/g;
    let last = 0, m;
    while ((m = pattern.exec(text))) {
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      if (m[1]) parent.append(el("code", {}, m[1].slice(1, -1)));
      else if (m[2]) parent.append(el("strong", {}, m[2].slice(2, -2)));
      else if (m[3]) parent.append(el("em", {}, m[3].slice(1, -1)));
      else parent.append(el("a", { href: m[5], target: "_blank", rel: "noopener noreferrer" }, m[4].slice(1, m[4].indexOf("]("))));
      last = pattern.lastIndex;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  function codeBlock(code, lang) {
    const pre = el("pre", {}, el("code", lang ? { "data-lang": lang } : {}, code));
    pre.append(el("button", { class: "copy", type: "button", onclick: () => copy(code) }, "Copy"));
    return pre;
  }

  function renderMarkdown(text, into) {
    into.replaceChildren();
    const lines = text.split("\n");
    let i = 0, para = [];
    const flush = () => {
      if (!para.length) return;
      const p = el("p");
      para.forEach((l, k) => { if (k) p.append(el("br")); inline(l, p); });
      into.append(p);
      para = [];
    };
    while (i < lines.length) {
      const line = lines[i];
      const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
      if (fence) {
        flush();
        const body = [];
        i++;
        while (i < lines.length && !/^\s*```\s*$/.test(lines[i])) body.push(lines[i++]);
        i++;  // the closing fence (absent while the answer still streams)
        into.append(codeBlock(body.join("\n"), fence[1]));
        continue;
      }
      const heading = line.match(/^(#{1,3})\s+(.*)$/);
      if (heading) { flush(); const h = el("h" + heading[1].length); inline(heading[2], h); into.append(h); i++; continue; }
      const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
      if (item) {
        flush();
        const ordered = /\d/.test(item[1]);
        const list = el(ordered ? "ol" : "ul");
        while (i < lines.length) {
          const m = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
          if (!m || /\d/.test(m[1]) !== ordered) break;
          const li = el("li"); inline(m[2], li); list.append(li); i++;
        }
        into.append(list);
        continue;
      }
      if (!line.trim()) { flush(); i++; continue; }
      para.push(line);
      i++;
    }
    flush();
  }

  // ---- rendering --------------------------------------------------------------------------------------

  function renderAll() {
    renderConversations();
    renderMessages();
  }

  function renderConversations() {
    const list = $("conversations");
    list.replaceChildren(...conversations.map((c) => el("li", { class: c === current ? "current" : "" },
      el("button", { class: "open", type: "button", title: c.title, onclick: () => { if (c !== current) stop(); current = c; save(); renderAll(); closeSidebar(); } }, c.title),
      el("button", { class: "delete", type: "button", title: "Delete", "aria-label": "Delete conversation", onclick: () => removeConversation(c) }, "✕"))));
  }

  function removeConversation(c) {
    if (c === current) stop();
    conversations = conversations.filter((x) => x !== c);
    if (current === c) current = conversations[0] || null;
    save();
    renderAll();
  }

  function renderMessages() {
    const box = $("messages");
    if (!current || !current.messages.length) {
      box.replaceChildren(el("p", { class: "empty" }, "Ask anything, attach a picture or a recording, or start a call."));
      return;
    }
    box.replaceChildren(...current.messages.map((m, i) => messageElement(m, i)));
    box.scrollTop = box.scrollHeight;
  }

  function mediaElement(x) {
    if (x.kind === "image" && x.url) return el("img", { src: x.url, alt: x.name || "image" });
    const label = x.kind === "image" ? "image: " : "audio: ";
    const seconds = x.seconds ? ` (${x.seconds.toFixed(1)} s)` : "";
    return el("span", { class: "clip" }, label + (x.name || x.kind) + seconds + (x.dropped ? " — not kept" : ""));
  }

  function messageElement(m, index) {
    const bubble = el("div", { class: "bubble" });
    const node = el("div", { class: `msg ${m.role}${m.error ? " error" : ""}${m.streaming ? " streaming" : ""}`, "data-index": index });
    if (m.media && m.media.length) node.append(el("div", { class: "media" }, ...m.media.map(mediaElement)));
    if (m.error) bubble.textContent = m.error;
    else if (m.role === "assistant") renderMarkdown(m.content || "", bubble);
    else bubble.textContent = m.content;
    node.append(bubble);
    if (m.audioURL) node.append(el("audio", { controls: "", src: m.audioURL }));
    const meta = el("div", { class: "meta" });
    if (m.usage) {
      node.dataset.promptTokens = m.usage.prompt_tokens;
      const cached = m.usage.prompt_tokens_details ? m.usage.prompt_tokens_details.cached_tokens : 0;
      meta.append(el("span", { class: "usage" }, `${m.usage.prompt_tokens} prompt (${cached} cached) · ${m.usage.completion_tokens} generated`));
    }
    if (m.stopped) meta.append(el("span", {}, "stopped"));
    if (!m.streaming && !m.error) {
      meta.append(el("button", { type: "button", class: "copy-msg", onclick: () => copy(m.content || "") }, "Copy"));
      if (m.role === "user") meta.append(el("button", { type: "button", class: "edit", onclick: () => edit(index, node) }, "Edit"));
    }
    if (m.role !== "user" && index === current.messages.length - 1 && !m.streaming) {
      meta.append(el("button", { type: "button", class: "regenerate", onclick: regenerate }, "Regenerate"));
    }
    node.append(meta);
    return node;
  }

  function updateMessage(index) {
    const box = $("messages");
    const old = box.querySelector(`.msg[data-index="${index}"]`);
    const fresh = messageElement(current.messages[index], index);
    if (old) old.replaceWith(fresh); else box.append(fresh);
    box.scrollTop = box.scrollHeight;
  }

  function showError(text) {
    if (!current) newConversation();
    current.messages.push({ role: "error", error: text });
    save();
    renderMessages();
  }

  async function copy(text) {
    try { await navigator.clipboard.writeText(text); } catch {
      const t = el("textarea", {}, text);
      document.body.append(t); t.select(); document.execCommand("copy"); t.remove();
    }
  }

  // ---- talking to the server ---------------------------------------------------------------------------

  function headers(json = true) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (settings.api_key) h.Authorization = "Bearer " + settings.api_key;
    return h;
  }

  // fetch, with the server's error object (or its absence) turned into a readable Error
  async function call(path, options) {
    let r;
    try { r = await fetch(path, options); } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Error("The server cannot be reached. Is `minicpmo serve` still running?");
    }
    if (!r.ok) {
      let message = `HTTP ${r.status}`;
      try { const j = await r.json(); if (j.error && j.error.message) message = j.error.message; } catch { /* not JSON */ }
      if (r.status === 401) message += " — set the API key in Settings.";
      throw new Error(message);
    }
    return r;
  }

  // The conversation as the API wants it: the system prompt, then each turn with its media.
  function apiMessages() {
    const out = [];
    if (settings.system.trim()) out.push({ role: "system", content: settings.system });
    for (const m of current.messages) {
      if (m.role === "user") {
        const parts = [];
        for (const x of m.media || []) {
          if (!x.url) continue;
          if (x.kind === "image") parts.push({ type: "image_url", image_url: { url: x.url } });
        }
        if (m.content) parts.push({ type: "text", text: m.content });
        for (const x of m.media || []) {
          if (x.url && x.kind === "audio") parts.push({ type: "input_audio", input_audio: { data: x.url.split(",")[1], format: "wav" } });
        }
        out.push({ role: "user", content: parts });
      } else if (m.role === "assistant" && !m.error && m.content) {
        out.push({ role: "assistant", content: m.content });
      }
    }
    return out;
  }

  function requestBody() {
    const body = { model: "minicpm-o", messages: apiMessages(), stream: true, stream_options: { include_usage: true } };
    for (const k of ["temperature", "top_p", "top_k", "repetition_penalty", "max_tokens"]) body[k] = Number(settings[k]);
    if (settings.seed !== "" && settings.seed != null) body.seed = Number(settings.seed);
    if (settings.speak) { body.modalities = ["text", "audio"]; body.audio = { voice: settings.voice || "default", format: "pcm16" }; }
    return body;
  }

  async function generate() {
    const conv = current;
    const index = conv.messages.push({ role: "assistant", content: "", streaming: true }) - 1;
    const m = conv.messages[index];
    const show = () => { if (current === conv) updateMessage(index); };
    show();
    setBusy(true);
    controller = new AbortController();
    const pcm = [];
    try {
      const r = await call("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(requestBody()), signal: controller.signal });
      hooks.requests++;
      const reader = r.body.getReader(), decoder = new TextDecoder();
      let buffer = "", done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") { done = true; break; }
          const event = JSON.parse(data);
          if (event.error) throw new Error(event.error.message);
          if (event.usage) m.usage = event.usage;
          const delta = event.choices && event.choices[0] && event.choices[0].delta;
          if (!delta) continue;
          if (delta.content) m.content += delta.content;
          if (delta.audio) {
            if (delta.audio.transcript) m.content += delta.audio.transcript;
            if (delta.audio.data) { const s = pcm16(delta.audio.data); pcm.push(s); play(s); }
          }
          show();
        }
      }
    } catch (e) {
      if (e.name === "AbortError") m.stopped = true;
      else { m.error = e.message; }
    } finally {
      m.streaming = false;
      if (controller && !controller.signal.aborted) controller.abort();  // never leave the server generating unread
      controller = null;
      if (pcm.length) m.audioURL = URL.createObjectURL(wavBlob(pcm, 24000));
      if (conv.title === "New chat") {
        const first = conv.messages.find((x) => x.role === "user");
        if (first) conv.title = (first.content || (first.media[0] || {}).name || "Chat").slice(0, 48);
      }
      save();
      renderAll();
      setBusy(false);
    }
  }

  function setBusy(busy) {
    hooks.busy = busy;
    $("send").hidden = busy;
    $("stop").hidden = !busy;
  }

  async function send() {
    const text = $("input").value.trim();
    if (!text && !attachments.length) return;
    if (controller) return;
    if (!current) newConversation();
    current.messages.push({ role: "user", content: text, media: attachments });
    attachments = [];
    $("input").value = "";
    autosize();
    renderAttachments();
    renderMessages();
    await generate();
  }

  function stop() {
    if (controller) controller.abort();
    stopPlayback();
  }

  function regenerate() {
    if (controller) return;
    while (current.messages.length && current.messages[current.messages.length - 1].role !== "user") current.messages.pop();
    renderMessages();
    generate();
  }

  function edit(index, node) {
    if (controller) return;
    const m = current.messages[index];
    const box = el("textarea", { class: "edit-box" }, m.content || "");
    const bubble = node.querySelector(".bubble");
    bubble.replaceChildren(box, el("div", { class: "meta" },
      el("button", { type: "button", onclick: () => { m.content = box.value; current.messages.length = index + 1; renderMessages(); generate(); } }, "Send"),
      el("button", { type: "button", onclick: renderMessages }, "Cancel")));
    box.focus();
  }

  // ---- sound out ----------------------------------------------------------------------------------------

  function pcm16(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const view = new DataView(bytes.buffer), out = new Float32Array(bytes.length >> 1);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true) / 32768;
    return out;
  }

  // Chunks are cross-faded on the server, so back to back at sample accuracy they play without gaps.
  function play(samples) {
    if (!samples.length) return;
    const ctx = audioOut.ctx || (audioOut.ctx = new AudioContext());
    if (ctx.state === "suspended") ctx.resume();
    const buffer = ctx.createBuffer(1, samples.length, 24000);
    buffer.copyToChannel(samples, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    audioOut.next = Math.max(audioOut.next, ctx.currentTime + 0.05);
    source.start(audioOut.next);
    audioOut.next += buffer.duration;
    audioOut.sources.push(source);
    source.onended = () => { audioOut.sources = audioOut.sources.filter((s) => s !== source); };
    hooks.scheduledSamples += samples.length;
  }

  function stopPlayback() {
    for (const s of audioOut.sources) { try { s.stop(); } catch { /* already ended */ } }
    audioOut.sources = [];
    audioOut.next = 0;
  }

  function isPlaying() { return audioOut.ctx && audioOut.next > audioOut.ctx.currentTime; }

  function wavBlob(chunks, rate) {
    const n = chunks.reduce((a, c) => a + c.length, 0);
    const view = new DataView(new ArrayBuffer(44 + 2 * n));
    const text = (o, s) => { for (let i = 0; i < s.length; i++) view.setUint8(o + i, s.charCodeAt(i)); };
    text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
    view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
    text(36, "data"); view.setUint32(40, 2 * n, true);
    let o = 44;
    for (const c of chunks) for (const v of c) { view.setInt16(o, Math.max(-1, Math.min(1, v)) * 32767, true); o += 2; }
    return new Blob([view.buffer], { type: "audio/wav" });
  }

  // (not fetch(): the page's Content-Security-Policy allows connections to the server only)
  function dataURLToBlob(url) {
    const [head, body] = url.split(",");
    const bytes = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
    return new Blob([bytes], { type: (head.match(/^data:([^;]+)/) || [])[1] || "application/octet-stream" });
  }

  function blobToDataURL(blob) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(r.result);
      r.onerror = () => reject(r.error);
      r.readAsDataURL(blob);
    });
  }

  // ---- sound in -----------------------------------------------------------------------------------------

  // Microphone samples at the context's rate, handed to onSamples as they come.
  async function openMicrophone(onSamples) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const node = ctx.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (e) => onSamples(new Float32Array(e.inputBuffer.getChannelData(0)), ctx.sampleRate);
    source.connect(node);
    node.connect(ctx.destination);
    return { rate: ctx.sampleRate, close: () => { node.disconnect(); source.disconnect(); stream.getTracks().forEach((t) => t.stop()); ctx.close(); } };
  }

  // Down to 16 kHz mono by averaging each output sample's span (a box filter against aliasing).
  function to16k(chunks, rate) {
    const n = chunks.reduce((a, c) => a + c.length, 0), all = new Float32Array(n);
    let o = 0;
    for (const c of chunks) { all.set(c, o); o += c.length; }
    const step = rate / 16000, out = new Float32Array(Math.floor(n / step));
    for (let i = 0; i < out.length; i++) {
      const a = Math.floor(i * step), b = Math.max(a + 1, Math.floor((i + 1) * step));
      let s = 0;
      for (let k = a; k < b; k++) s += all[k];
      out[i] = s / (b - a);
    }
    return out;
  }

  async function recordedAttachment(chunks, rate, name) {
    const samples = to16k(chunks, rate);
    return { kind: "audio", name, url: await blobToDataURL(wavBlob([samples], 16000)), seconds: samples.length / 16000 };
  }

  let recorder = null;
  async function toggleRecording() {
    const button = $("record");
    if (recorder) {
      const { mic, chunks, started } = recorder;
      recorder = null;
      mic.close();
      clearInterval(button.timer);
      button.classList.remove("active");
      $("record-time").textContent = "";
      attachments.push(await recordedAttachment(chunks, mic.rate, `recording ${new Date(started).toLocaleTimeString()}`));
      renderAttachments();
      return;
    }
    try {
      const chunks = [];
      const mic = await openMicrophone((s) => chunks.push(s));
      recorder = { mic, chunks, started: Date.now() };
      button.classList.add("active");
      button.timer = setInterval(() => { $("record-time").textContent = ((Date.now() - recorder.started) / 1000).toFixed(0) + " s — stop"; }, 250);
    } catch (e) {
      showError("The microphone could not be opened: " + e.message);
    }
  }

  async function transcribe(att) {
    try {
      const form = new FormData();
      form.append("file", dataURLToBlob(att.url), "recording.wav");
      form.append("model", "minicpm-o");
      const r = await call("/v1/audio/transcriptions", { method: "POST", headers: headers(false), body: form });
      const j = await r.json();
      $("input").value = ($("input").value ? $("input").value + " " : "") + j.text;
      autosize();
    } catch (e) { showError("Transcription failed: " + e.message); }
  }

  // ---- attachments ---------------------------------------------------------------------------------------

  async function attachFiles(files) {
    for (const f of files) {
      const isImage = /^image\/(png|jpeg)$/.test(f.type);
      const isAudio = /wav/.test(f.type) || /\.wav$/i.test(f.name);
      if (!isImage && !isAudio) { showError(`${f.name}: only PNG and JPEG images and WAV recordings can be attached.`); continue; }
      const url = await blobToDataURL(f);
      const att = { kind: isImage ? "image" : "audio", name: f.name, url };
      if (isAudio) att.seconds = await wavSeconds(f);
      attachments.push(att);
    }
    renderAttachments();
  }

  async function wavSeconds(file) {
    try {
      const v = new DataView(await file.slice(0, 44).arrayBuffer());
      const rate = v.getUint32(24, true), bytesPerSecond = v.getUint32(28, true);
      return rate && bytesPerSecond ? (file.size - 44) / bytesPerSecond : undefined;
    } catch { return undefined; }
  }

  function renderAttachments() {
    $("attachments").replaceChildren(...attachments.map((a, i) => el("span", { class: "att" },
      a.kind === "image" ? el("img", { src: a.url, alt: a.name }) : el("span", { class: "clip" }, "audio: " + a.name + (a.seconds ? ` (${a.seconds.toFixed(1)} s)` : "")),
      a.kind === "audio" ? el("button", { type: "button", class: "transcribe", onclick: () => transcribe(a) }, "Transcribe") : null,
      el("button", { type: "button", title: "Remove", onclick: () => { attachments.splice(i, 1); renderAttachments(); } }, "✕"))));
  }

  // ---- live call over /v1/live: the server listens, finds the turns, answers aloud; speaking interrupts ----

  let callState = null;
  async function startCall() {
    if (callState) return hangUp();
    settings.speak = true;
    $("speak").checked = true;
    save();
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const key = settings.api_key ? "?api_key=" + encodeURIComponent(settings.api_key) : "";
    const s = { ws: new WebSocket(`${proto}//${location.host}/v1/live${key}`), mic: null, assistant: null, user: null, pending: [] };
    callState = s;
    $("call-panel").hidden = false;
    $("call").classList.add("active");
    $("call-status").textContent = "Connecting…";
    s.ws.onopen = async () => {
      const session = { temperature: Number(settings.temperature), max_response_output_tokens: Number(settings.max_tokens),
                        turn_detection: { silence_duration_ms: Number(settings.silence_ms) }, input_sample_rate: 16000 };
      if (settings.system) session.instructions = settings.system;
      s.ws.send(JSON.stringify({ type: "session.update", session }));
      try {
        s.mic = await openMicrophone((samples, rate) => sendAudio(s, samples, rate));
        $("call-status").textContent = "Listening…";
      } catch (e) { showError("The microphone could not be opened: " + e.message); hangUp(); }
    };
    s.ws.onmessage = (e) => onLiveEvent(s, JSON.parse(e.data));
    s.ws.onerror = () => showError("The live call could not connect to the server.");
    s.ws.onclose = () => { if (callState === s) hangUp(); };
  }

  function sendAudio(s, samples, rate) {
    let e = 0;
    for (const v of samples) e += v * v;
    $("call-level").firstElementChild.style.width = Math.min(100, Math.sqrt(e / samples.length) * 800) + "%";
    if (s.ws.readyState !== WebSocket.OPEN) return;
    const pcm = to16k([samples], rate), bytes = new Uint8Array(2 * pcm.length), view = new DataView(bytes.buffer);
    for (let i = 0; i < pcm.length; i++) view.setInt16(2 * i, Math.max(-1, Math.min(1, pcm[i])) * 32767, true);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    s.ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: btoa(bin) }));
    hooks.liveAppends = (hooks.liveAppends || 0) + 1;
  }

  function onLiveEvent(s, ev) {
    hooks.liveEvents = (hooks.liveEvents || 0) + 1;
    switch (ev.type) {
      case "input_audio_buffer.speech_started":
        s.lastStart = ev.audio_start_ms;
        if (isPlaying()) stopPlayback();
        $("call-status").textContent = "Hearing you…";
        break;
      case "input_audio_buffer.speech_stopped": {
        if (!current) newConversation();
        const seconds = Math.max(0, (ev.audio_end_ms - (s.lastStart || 0)) / 1000);
        current.messages.push({ role: "user", content: "", media: [{ kind: "audio", name: "spoken turn", seconds }] });
        renderMessages();
        $("call-status").textContent = "Answering…";
        break;
      }
      case "response.created":
        if (!current) newConversation();
        current.messages.push({ role: "assistant", content: "", streaming: true });
        s.assistant = current.messages.length - 1;
        renderMessages();
        break;
      case "response.audio_transcript.delta":
      case "response.text.delta":
        if (s.assistant != null) { current.messages[s.assistant].content += ev.delta; updateMessage(s.assistant); }
        break;
      case "response.audio.delta":
        play(pcm16(ev.delta));
        break;
      case "response.interrupted":
        hooks.interruptions++;
        stopPlayback();
        break;
      case "response.done":
        if (s.assistant != null) {
          const m = current.messages[s.assistant];
          m.streaming = false;
          if (ev.response && ev.response.status === "cancelled") m.stopped = true;
          s.assistant = null;
          save();
          renderMessages();
        }
        if (callState) $("call-status").textContent = "Listening…";
        break;
      case "error":
        showError((ev.error && ev.error.message) || "live call error");
        break;
    }
  }

  function hangUp() {
    if (!callState) return;
    const s = callState;
    callState = null;
    if (s.mic) s.mic.close();
    try { s.ws.close(); } catch { /* already closed */ }
    stopPlayback();
    $("call-panel").hidden = true;
    $("call").classList.remove("active");
  }

  // ---- voices ---------------------------------------------------------------------------------------------

  async function loadVoices() {
    try {
      const r = await call("/v1/voices", { headers: headers(false) });
      const list = (await r.json()).data || [];
      const select = $("voice");
      select.replaceChildren(el("option", { value: "default" }, "Default"),
        ...list.map((v) => el("option", { value: v.id }, `Cloned ${new Date(v.created * 1000).toLocaleString()} (${v.seconds.toFixed(1)} s)`)));
      select.value = list.some((v) => v.id === settings.voice) ? settings.voice : "default";
    } catch { /* the model may still be loading; the list stays Default */ }
  }

  async function uploadVoice(file) {
    try {
      const r = await call("/v1/voices", { method: "POST", headers: { ...headers(false), "Content-Type": "audio/wav" }, body: file });
      const v = await r.json();
      settings.voice = v.id;
      save();
      await loadVoices();
    } catch (e) { showError("The voice could not be registered: " + e.message); }
  }

  // ---- settings, theme, layout ------------------------------------------------------------------------------

  function applyTheme() {
    const dark = settings.theme === "dark" || (settings.theme === "auto" && matchMedia("(prefers-color-scheme: dark)").matches);
    document.documentElement.dataset.theme = dark ? "dark" : "light";
  }

  function fillSettings() {
    for (const k of Object.keys(DEFAULTS)) {
      const input = $(k);
      if (!input || k === "speak") continue;
      input.value = settings[k];
    }
    $("speak").checked = !!settings.speak;
  }

  function readSettings() {
    for (const k of Object.keys(DEFAULTS)) {
      const input = $(k);
      if (!input || k === "speak" || k === "theme") continue;
      settings[k] = NUMERIC.includes(k) && input.value !== "" ? Number(input.value) : input.value;
    }
    save();
  }

  function autosize() {
    const t = $("input");
    t.style.height = "auto";
    t.style.height = Math.min(t.scrollHeight, 200) + "px";
  }

  function closeSidebar() { $("app").classList.remove("sidebar-open"); }

  async function checkServer() {
    try {
      const r = await fetch("/health");
      if (r.status === 503) {
        const j = await r.json().catch(() => ({}));
        if (j.status === "loading") { setTimeout(checkServer, 1000); return; }
        showError("The model failed to load: " + (j.message || "unknown error"));
        return;
      }
      loadVoices();
    } catch { showError("The server cannot be reached. Is `minicpmo serve` still running?"); }
  }

  function wire() {
    $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
    $("input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); } });
    $("input").addEventListener("input", autosize);
    $("input").addEventListener("paste", (e) => {
      const files = [...(e.clipboardData || {}).files || []];
      if (files.length) { e.preventDefault(); attachFiles(files); }
    });
    $("stop").addEventListener("click", stop);
    $("file").addEventListener("change", (e) => { attachFiles([...e.target.files]); e.target.value = ""; });
    $("record").addEventListener("click", toggleRecording);
    const composer = $("composer");
    composer.addEventListener("dragover", (e) => { e.preventDefault(); composer.classList.add("drop"); });
    composer.addEventListener("dragleave", () => composer.classList.remove("drop"));
    composer.addEventListener("drop", (e) => { e.preventDefault(); composer.classList.remove("drop"); attachFiles([...e.dataTransfer.files]); });
    $("new-chat").addEventListener("click", () => { newConversation(); closeSidebar(); });
    $("theme").addEventListener("click", () => {
      const dark = document.documentElement.dataset.theme === "dark";
      settings.theme = dark ? "light" : "dark";
      save();
      applyTheme();
    });
    $("speak").addEventListener("change", (e) => { settings.speak = e.target.checked; save(); });
    $("call").addEventListener("click", startCall);
    $("hang-up").addEventListener("click", hangUp);
    $("open-settings").addEventListener("click", () => { fillSettings(); $("settings").hidden = false; });
    $("close-settings").addEventListener("click", () => { readSettings(); $("settings").hidden = true; });
    $("reset-settings").addEventListener("click", () => { settings = { ...DEFAULTS, theme: settings.theme, api_key: settings.api_key }; fillSettings(); save(); });
    $("voice").addEventListener("change", (e) => { settings.voice = e.target.value; save(); });
    $("voice-file").addEventListener("change", (e) => { if (e.target.files[0]) uploadVoice(e.target.files[0]); e.target.value = ""; });
    $("toggle-sidebar").addEventListener("click", () => $("app").classList.toggle("sidebar-open"));
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
  }

  load();
  applyTheme();
  wire();
  fillSettings();
  renderAll();
  checkServer();
})();
