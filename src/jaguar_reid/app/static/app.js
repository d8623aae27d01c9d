// jaguar-reid review app: zoom/pan on photos, keyboard shortcuts, upload progress. No build step.
"use strict";

function enableZoom(box) {
  const img = box.querySelector("img");
  let scale = 1, x = 0, y = 0, drag = null;
  const apply = () => { img.style.transform = `translate(${x}px, ${y}px) scale(${scale})`; };
  box.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = box.getBoundingClientRect();
    const px = event.clientX - rect.left - x, py = event.clientY - rect.top - y;
    const factor = event.deltaY < 0 ? 1.2 : 1 / 1.2;
    const next = Math.min(12, Math.max(1, scale * factor));
    x -= px * (next / scale - 1); y -= py * (next / scale - 1); scale = next;
    if (scale === 1) { x = 0; y = 0; }
    apply();
  }, { passive: false });
  box.addEventListener("pointerdown", (event) => { drag = [event.clientX - x, event.clientY - y]; box.setPointerCapture(event.pointerId); });
  box.addEventListener("pointermove", (event) => { if (drag) { x = event.clientX - drag[0]; y = event.clientY - drag[1]; apply(); } });
  box.addEventListener("pointerup", () => { drag = null; });
  box.addEventListener("dblclick", () => { scale = 1; x = 0; y = 0; apply(); });
}

function reviewShortcuts() {
  const review = document.querySelector(".review");
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const click = (selector) => { const element = document.querySelector(selector); if (element) { event.preventDefault(); element.click(); } };
    if (event.key === "u") return click("#undo-button");
    if (!review) return;
    if (/^[1-9]$/.test(event.key)) return click(`.candidate[data-rank="${event.key}"] button.confirm`);
    if (event.key === "n") { event.preventDefault(); document.getElementById("new-name").focus(); }
    if (event.key === "s") return click("#skip-button");
    if (event.key === "r") return click("#reject-button");
  });
  const newName = document.getElementById("new-name");
  if (newName) newName.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); document.getElementById("new-button").click(); }
  });
}

function uploadProgress() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("photos"), drop = document.getElementById("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); input.files = event.dataTransfer.files; });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const bar = document.getElementById("upload-progress"), status = document.getElementById("upload-status");
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    bar.hidden = false;
    request.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = 100 * e.loaded / e.total; };
    request.upload.onload = () => { status.textContent = "embedding and queueing..."; };
    request.onload = () => {
      if (request.status < 400) { window.location = request.responseURL; }
      else { bar.hidden = true; status.textContent = request.responseText.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 300); status.className = "error"; }
    };
    request.onerror = () => { status.textContent = "upload failed (network)"; status.className = "error"; };
    request.send(new FormData(form));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".zoom").forEach(enableZoom);
  reviewShortcuts();
  uploadProgress();
  const merge = document.getElementById("merge-form");
  if (merge) merge.addEventListener("submit", (event) => {
    const target = document.getElementById("merge-target").value;
    if (!window.confirm(`Merge every photo into ${target}? (It can be undone in History.)`)) event.preventDefault();
  });
});
