// The task page: ranking by drag and drop (pointer events, so mouse, pen and touch work) and by
// keyboard. The order lives in the hidden "order" field: display positions, best first.
(function () {
  "use strict";
  const form = document.getElementById("label-form");
  if (!form) return;
  const list = document.getElementById("ranking");
  const orderField = document.getElementById("order");
  const cards = () => Array.from(list.querySelectorAll(":scope > .card"));

  function refresh() {
    const all = cards();
    orderField.value = all.map((c) => c.dataset.pos).join(",");
    let rank = 0;
    all.forEach((card, place) => {
      const tie = card.querySelector(".tie input");
      if (tie) {
        tie.disabled = place === 0;
        if (place === 0) tie.checked = false;
      }
      if (!(tie && tie.checked)) rank = place + 1;
      card.querySelector(".rank").textContent = "#" + rank;
    });
  }

  function move(card, step) {
    const all = cards();
    const target = all.indexOf(card) + step;
    if (target < 0 || target >= all.length) return;
    if (step < 0) list.insertBefore(card, all[target]);
    else list.insertBefore(card, all[target].nextSibling);
    refresh();
    card.focus();
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.move");
    if (button) move(button.closest(".card"), Number(button.dataset.move));
  });
  list.addEventListener("change", refresh);

  // drag and drop by the handle
  let dragged = null;
  list.addEventListener("pointerdown", (event) => {
    const handle = event.target.closest(".handle");
    if (!handle) return;
    dragged = handle.closest(".card");
    dragged.classList.add("dragging");
    handle.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  list.addEventListener("pointermove", (event) => {
    if (!dragged) return;
    const over = cards().find((c) => {
      const box = c.getBoundingClientRect();
      return c !== dragged && event.clientY >= box.top && event.clientY <= box.bottom;
    });
    if (!over) return;
    const box = over.getBoundingClientRect();
    const after = event.clientY > box.top + box.height / 2;
    list.insertBefore(dragged, after ? over.nextSibling : over);
    refresh();
  });
  const drop = () => {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    dragged.focus();
    dragged = null;
    refresh();
  };
  list.addEventListener("pointerup", drop);
  list.addEventListener("pointercancel", drop);

  // keyboard, on a focused card
  list.addEventListener("keydown", (event) => {
    const card = event.target.closest(".card");
    if (!card || (event.target !== card && event.key !== "Escape")) return;  // typing in a field
    const all = cards();
    const here = all.indexOf(card);
    const key = event.key;
    if (event.shiftKey && (key === "ArrowUp" || key === "K")) move(card, -1);
    else if (event.shiftKey && (key === "ArrowDown" || key === "J")) move(card, 1);
    else if (key === "ArrowUp" || key === "k") { if (here > 0) all[here - 1].focus(); }
    else if (key === "ArrowDown" || key === "j") { if (here + 1 < all.length) all[here + 1].focus(); }
    else if (/^[1-7]$/.test(key)) {
      card.querySelector(`.score input[value="${key}"]`).checked = true;
    } else if (key === "t") {
      const tie = card.querySelector(".tie input");
      if (tie && !tie.disabled) { tie.checked = !tie.checked; refresh(); }
    } else if (key === "e" || key === "c") {
      const box = card.querySelector(key === "e" ? "details.edit" : "details.critique");
      box.open = true;
      box.querySelector("textarea").focus();
    } else if (key === "Escape") { card.focus(); }
    else return;
    event.preventDefault();
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      document.getElementById("submit").click();
    }
  });
  refresh();
})();
