// dockyard console: the small script layer over server-rendered pages. No framework, no build step.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

function localTimes(root) {
  for (const cell of root.querySelectorAll("[data-unix]")) {
    const seconds = Number(cell.dataset.unix);
    if (seconds > 0) cell.textContent = new Date(seconds * 1000).toLocaleString();
  }
}

// ---- agents overview: statuses refresh in place --------------------------------------------------------------
function refreshAgents(table) {
  const tick = async () => {
    try {
      const answer = await fetch(table.dataset.refresh, { credentials: "same-origin" });
      if (answer.ok) {
        for (const agent of (await answer.json()).agents) {
          const row = table.querySelector(`tr[data-agent="${CSS.escape(agent.name)}"]`);
          if (!row) { location.reload(); return; }
          const status = row.querySelector('[data-field="status"]');
          status.textContent = agent.status;
          status.className = `status status-${agent.status}`;
          row.querySelector('[data-field="error"]').textContent =
            agent.error ? `${agent.error.code}: ${agent.error.message}` : "";
        }
      }
    } finally {
      setTimeout(tick, 1500);
    }
  };
  setTimeout(tick, 1500);
}

// ---- live logs ------------------------------------------------------------------------------------------------
function followLogs(view) {
  const state = document.getElementById("log-state");
  const follow = document.getElementById("log-follow");
  const source = new EventSource(view.dataset.stream);
  let lines = 0;
  const append = (text, kind) => {
    const line = document.createElement("span");
    line.className = `line-${kind}`;
    line.textContent = text + "\n";
    view.appendChild(line);
    lines += 1;
    view.dataset.lines = String(lines);
    if (follow.checked) view.scrollTop = view.scrollHeight;
  };
  source.addEventListener("log", (event) => {
    const record = JSON.parse(event.data);
    append(record.message, record.stream);
    state.textContent = "following";
  });
  source.addEventListener("console.error", (event) => {
    append(JSON.parse(event.data).message, "stderr");
    state.textContent = "stopped";
    source.close();
  });
  source.onerror = () => { state.textContent = "reconnecting…"; };
}

// ---- playground -----------------------------------------------------------------------------------------------
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      let parsed = null;
      try { parsed = JSON.parse(data.join("\n")); } catch (e) { continue; }
      yield { name: (parsed && parsed.type) || name, data: parsed };
    }
  }
}

function outputText(response) {
  const parts = [];
  for (const item of (response && response.output) || []) {
    for (const content of item.content || []) if (content.text) parts.push(content.text);
  }
  return parts.join("");
}

function playground(form) {
  const target = document.getElementById("target");
  const sessionInput = document.getElementById("session");
  const prompt = document.getElementById("prompt");
  const messages = document.getElementById("messages");
  const state = document.getElementById("chat-state");
  const fileInput = document.getElementById("file");
  const agentName = () => target.value.startsWith("agent:") ? target.value.slice(6) : null;

  const bubble = (role, text) => {
    const element = document.createElement("div");
    element.className = `message ${role}`;
    element.textContent = text;
    messages.appendChild(element);
    messages.scrollTop = messages.scrollHeight;
    return element;
  };
  const post = (url, options = {}) => fetch(url, {
    method: options.method || "POST", credentials: "same-origin", body: options.body,
    headers: { "x-csrf-token": csrf(), ...(options.headers || {}) },
  });

  async function ensureSession(fresh) {
    const name = agentName();
    if (!name) return null;
    if (sessionInput.value && !fresh) return sessionInput.value;
    const answer = await post(`/console/api/agents/${encodeURIComponent(name)}/sessions`);
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : answer.statusText);
    sessionInput.value = body.agent_session_id;
    await listFiles();
    return sessionInput.value;
  }

  async function listFiles() {
    const list = document.getElementById("files");
    list.textContent = "";
    const name = agentName();
    if (!name || !sessionInput.value) return;
    const answer = await fetch(`/console/api/agents/${encodeURIComponent(name)}/sessions/${encodeURIComponent(sessionInput.value)}/files`,
                               { credentials: "same-origin" });
    if (!answer.ok) return;
    for (const entry of (await answer.json()).entries || []) {
      const item = document.createElement("li");
      item.textContent = `${entry.name} (${entry.size} bytes)`;
      list.appendChild(item);
    }
  }

  document.getElementById("new-session").addEventListener("click", async () => {
    try { state.textContent = `session ${await ensureSession(true)}`; }
    catch (error) { state.textContent = error.message; }
  });
  target.addEventListener("change", () => { sessionInput.value = ""; listFiles(); });
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files[0];
    if (!file) return;
    try {
      const session = await ensureSession(false);
      if (!session) { state.textContent = "files go into an agent's session: pick an agent"; return; }
      const answer = await post(`/console/api/agents/${encodeURIComponent(agentName())}/sessions/${encodeURIComponent(session)}/files?path=${encodeURIComponent(file.name)}`,
                                { method: "PUT", body: file, headers: { "content-type": "application/octet-stream" } });
      const body = await answer.json();
      state.textContent = answer.ok ? `uploaded ${body.path} (${body.bytes_written} bytes)`
                                    : `upload refused: ${body.error ? body.error.message : answer.status}`;
      await listFiles();
    } catch (error) { state.textContent = error.message; }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    prompt.value = "";
    bubble("user", text);
    const reply = bubble("assistant", "");
    reply.dataset.deltas = "0";
    state.textContent = "waiting for the first token…";
    let traceId = null, isAgent = false;
    try {
      const session = await ensureSession(false);
      const answer = await post("/console/api/chat", {
        body: JSON.stringify({ target: target.value, input: text, session_id: session,
                               max_output_tokens: Number(document.getElementById("max-tokens").value) || null }),
        headers: { "content-type": "application/json" },
      });
      if (!answer.ok) {
        const body = await answer.json();
        throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : answer.statusText);
      }
      for await (const { name, data } of sseEvents(answer)) {
        if (name === "console.trace") { traceId = data.trace_id; isAgent = data.agent; }
        else if (name === "response.output_text.delta") {
          reply.textContent += data.delta;
          reply.dataset.deltas = String(Number(reply.dataset.deltas) + 1);
          state.textContent = `streaming… ${reply.dataset.deltas} deltas`;
        } else if (name === "response.completed" && !reply.textContent) {
          reply.textContent = outputText(data.response);
        } else if (name === "console.response") {
          reply.textContent = outputText(data);
        } else if (name === "console.error" || name === "error") {
          throw new Error(data.message || JSON.stringify(data));
        }
      }
      reply.dataset.done = "true";
      state.textContent = `done: ${reply.dataset.deltas} deltas`;
    } catch (error) {
      reply.classList.add("failed");
      reply.textContent = error.message;
      reply.dataset.done = "error";
      state.textContent = "failed";
    }
    if (traceId && isAgent) {
      const meta = document.createElement("a");
      meta.className = "meta trace-link";
      meta.href = `/console/traces/${traceId}`;
      meta.textContent = "trace of this turn";
      reply.appendChild(meta);
    }
  });
  listFiles();
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const agents = document.querySelector("#agents[data-refresh]");
  if (agents) refreshAgents(agents);
  const log = document.getElementById("log");
  if (log) followLogs(log);
  const chat = document.getElementById("chat-form");
  if (chat) playground(chat);
});
