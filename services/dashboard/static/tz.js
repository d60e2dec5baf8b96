// The viewer's time zone for the times the dashboard shows: the browser's IANA zone in
// a cookie the server reads (hw_tz; a name it does not know falls back to the
// service's zone). A signed-in page drawn in another zone is reloaded once.
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  // IANA names only ("Asia/Shanghai", "America/Argentina/Buenos_Aires", "Etc/GMT+8").
  if (!zone || !/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone)) return;
  var cookie = "hw_tz=" + zone;
  if (document.cookie.split("; ").indexOf(cookie) !== -1) return;
  document.cookie = cookie + "; path=/ui; max-age=31536000; samesite=lax";
  var shown = document.documentElement.getAttribute("data-zone");
  // Only if the cookie took (not blocked), so this cannot loop.
  if (shown && shown !== zone && document.cookie.split("; ").indexOf(cookie) !== -1) {
    location.reload();
  }
})();
