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
