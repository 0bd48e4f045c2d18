// Live pages: reload every data-refresh seconds while the Live switch is on and nobody is typing.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var seconds = Number(document.body.dataset.refresh || 0);
  if (!live || !seconds) return;
  live.checked = localStorage.getItem("logjobs.live") !== "off";
  live.addEventListener("change", function () {
    localStorage.setItem("logjobs.live", live.checked ? "on" : "off");
  });
  setInterval(function () {
    var focused = document.activeElement;
    var typing = focused && /^(INPUT|SELECT|TEXTAREA)$/.test(focused.tagName) && focused !== live;
    if (live.checked && !typing) window.location.reload();
  }, seconds * 1000);
})();
