// jaguar-reid review app: zoom/pan on photos, keyboard shortcuts, upload progress. No build step.
"use strict";

// Where a client point falls in the photo's own pixels (object-fit: contain, any zoom).
function photoPixel(img, clientX, clientY) {
  const rect = img.getBoundingClientRect();
  const width = Number(img.dataset.width) || img.naturalWidth, height = Number(img.dataset.height) || img.naturalHeight;
  const fit = Math.min(rect.width / width, rect.height / height);
  const x = (clientX - rect.left - (rect.width - width * fit) / 2) / fit;
  const y = (clientY - rect.top - (rect.height - height * fit) / 2) / fit;
  return [Math.min(width, Math.max(0, x)), Math.min(height, Math.max(0, y))];
}

function enableCrop(box) {
  const img = box.querySelector("img"), outline = document.getElementById("crop-box"), form = document.getElementById("crop-form");
  let start = null;
  box.cropping = false;
  document.getElementById("crop-button").addEventListener("click", () => {
    box.cropping = !box.cropping;
    box.classList.toggle("cropping", box.cropping);
  });
  box.addEventListener("pointerdown", (event) => {
    if (!box.cropping) return;
    const bounds = box.getBoundingClientRect();
    start = [event.clientX, event.clientY, bounds];
    Object.assign(outline.style, { left: `${event.clientX - bounds.left}px`, top: `${event.clientY - bounds.top}px`, width: "0px", height: "0px" });
    outline.hidden = false;
  });
  box.addEventListener("pointermove", (event) => {
    if (!start) return;
    const [x0, y0, bounds] = start;
    Object.assign(outline.style, { left: `${Math.min(x0, event.clientX) - bounds.left}px`, top: `${Math.min(y0, event.clientY) - bounds.top}px`,
                                   width: `${Math.abs(event.clientX - x0)}px`, height: `${Math.abs(event.clientY - y0)}px` });
  });
  box.addEventListener("pointerup", (event) => {
    if (!start) return;
    const [a, b] = [photoPixel(img, start[0], start[1]), photoPixel(img, event.clientX, event.clientY)];
    start = null;
    const values = { left: Math.min(a[0], b[0]), top: Math.min(a[1], b[1]), right: Math.max(a[0], b[0]), bottom: Math.max(a[1], b[1]) };
    for (const [side, value] of Object.entries(values)) form.elements[side].value = value.toFixed(1);
    form.submit();
  });
}

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
  box.addEventListener("pointerdown", (event) => {
    if (box.cropping) return;
    drag = [event.clientX - x, event.clientY - y];
    box.setPointerCapture(event.pointerId);
  });
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
    if (event.key === "a") { event.preventDefault(); document.getElementById("assign-name").focus(); }
    if (event.key === "s") return click("#skip-button");
    if (event.key === "r") return click("#reject-button");
    if (event.key === "c") return click("#crop-button");
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
  const query = document.getElementById("query-zoom");
  if (query && document.getElementById("crop-form")) enableCrop(query);
  reviewShortcuts();
  uploadProgress();
  const merge = document.getElementById("merge-form");
  if (merge) merge.addEventListener("submit", (event) => {
    const target = document.getElementById("merge-target").value;
    if (!window.confirm(`Merge every photo into ${target}? (It can be undone in History.)`)) event.preventDefault();
  });
});
