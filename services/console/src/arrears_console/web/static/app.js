// Progressive enhancement only: every page works without this file.
// - forms with data-confirm ask before submitting (anything that messages a customer);
// - elements with data-poll="<seconds>" refresh themselves from the same URL's fragment (?fragment=<id>).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

function poll(el) {
  const seconds = Number(el.getAttribute("data-poll")) || 15;
  setInterval(async () => {
    if (document.hidden) return;
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", el.id);
    try {
      const r = await fetch(url, { headers: { accept: "text/html" }, credentials: "same-origin" });
      if (r.ok) el.innerHTML = await r.text();
    } catch (e) { /* offline: keep the last view */ }
  }, seconds * 1000);
}
document.querySelectorAll("[data-poll][id]").forEach(poll);

// The header's unread-notifications badge (progressive enhancement: the Notifications link works without it).
(async () => {
  const badge = document.getElementById("notif-unread");
  if (!badge) return;
  async function refresh() {
    if (document.hidden) return;
    try {
      const r = await fetch("/notifications/unread", { credentials: "same-origin" });
      if (!r.ok) return;
      const { unread } = await r.json();
      badge.textContent = unread ? String(unread) : "";
      badge.hidden = !unread;
    } catch (e) { /* offline: keep the last count */ }
  }
  await refresh();
  setInterval(refresh, 60000);
})();
