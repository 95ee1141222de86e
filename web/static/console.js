// Switchyard console: progressive enhancement only; every page works without this script.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons: <button data-copy="input-id">.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      if (!input) return;
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (_) {
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
  // Forms that ask before a destructive action: <form data-confirm="question">.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // The org switcher submits on change; its button stays for keyboard and no-script use.
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  const playground = document.getElementById("playground");
  if (playground) setUpPlayground(playground);
});

function setUpPlayground(form) {
  const output = document.getElementById("pg-output");
  const meta = document.getElementById("pg-meta");
  const base = document.getElementById("pg-base");
  // Default: this origin, which serves the gateway API when the console is reached through
  // a gateway (or a proxy that routes /api/v1 to one).
  base.value = localStorage.getItem("sy-gateway-base") || base.value || location.origin + "/api/v1";
  let key = null;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    localStorage.setItem("sy-gateway-base", base.value);
    output.textContent = "";
    meta.textContent = "";
    try {
      if (!key) {
        const body = new URLSearchParams({ csrf: form.dataset.csrf });
        const minted = await fetch("/playground/key", { method: "POST", body, credentials: "same-origin" });
        const data = await minted.json();
        if (!minted.ok) throw new Error(data.error || "could not create a playground key");
        key = data.key;
      }
      const response = await fetch(base.value.replace(/\/$/, "") + "/chat/completions", {
        method: "POST",
        headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
        body: JSON.stringify({
          model: form.model.value,
          stream: true,
          messages: [{ role: "user", content: form.prompt.value }],
        }),
      });
      if (!response.ok) throw new Error("gateway answered " + response.status + ": " + await response.text());
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let id = "";
      let usage = null;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            id = chunk.id || id;
            if (chunk.usage) usage = chunk.usage;
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) output.textContent += delta.content;
          }
        }
      }
      meta.textContent = "Generation " + id + (usage && usage.cost !== undefined ? " · cost $" + usage.cost : "");
      if (id) {
        const link = document.createElement("a");
        link.href = "/requests/" + encodeURIComponent(id);
        link.textContent = " · details";
        meta.appendChild(link);
      }
    } catch (err) {
      output.textContent = "Error: " + err.message;
    }
  });
}
