// Facet console: small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Ask before destructive actions (forms marked data-confirm, or bulk actions listed on the form).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    var bulkList = form.getAttribute("data-confirm-actions");
    if (bulkList) {
      var action = form.querySelector("[name=action]").value;
      if (bulkList.split(",").indexOf(action) >= 0) {
        var scope = form.querySelector("[name=scope]:checked");
        var count = scope && scope.value === "all" ? "every VM matching the filter" : countSelected(form) + " VMs";
        question = action + " " + count + "?";
      }
    }
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function countSelected(form) {
    return form.querySelectorAll("input[name=uuids]:checked").length;
  }

  // Row selection on the VM list.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.id === "select-page") {
      document.querySelectorAll("input[name=uuids]").forEach(function (box) { box.checked = target.checked; });
    }
    if (target.matches("[data-autosubmit]")) target.form.submit();
    var form = document.getElementById("bulk-form");
    if (form && form.contains(target)) {
      var counter = document.getElementById("selected-count");
      if (counter) counter.textContent = countSelected(form) + " selected";
    }
  });

  // Image upload with progress: the file goes as the raw request body, streamed by the server.
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    if (!form) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = form.file.files[0];
      var result = document.getElementById("upload-result");
      if (!form.name.value || !file) {
        result.innerHTML = '<div class="message message-error">Give a name and choose a file.</div>';
        return;
      }
      var params = new URLSearchParams({ name: form.name.value, kind: form.kind.value, container: form.container.value });
      var bar = document.getElementById("upload-progress");
      var request = new XMLHttpRequest();
      request.open("POST", form.getAttribute("data-upload-url") + "?" + params.toString());
      request.setRequestHeader("X-CSRFToken", csrfToken());
      request.setRequestHeader("Content-Type", "application/octet-stream");
      bar.hidden = false;
      request.upload.onprogress = function (e) {
        if (!e.lengthComputable) return;
        var percent = Math.floor(100 * e.loaded / e.total);
        bar.querySelector(".bar").style.width = percent + "%";
        bar.querySelector("span").textContent = percent + " %";
        bar.setAttribute("aria-valuenow", percent);
      };
      request.onload = function () {
        var body = {};
        try { body = JSON.parse(request.responseText); } catch (e) { /* not JSON */ }
        if (request.status === 201) {
          result.innerHTML = '<div class="message message-success">Uploaded. ' + escapeHtml(body.message || "") + "</div>";
          window.setTimeout(function () { window.location.reload(); }, 1200);
        } else {
          var lines = Object.keys(body).map(function (k) { return k + ": " + [].concat(body[k]).join(" "); });
          result.innerHTML = '<div class="message message-error">' + escapeHtml(lines.join("; ") || ("HTTP " + request.status)) + "</div>";
        }
      };
      request.onerror = function () {
        result.innerHTML = '<div class="message message-error">The upload was cut off; nothing was kept.</div>';
      };
      request.send(file);
    });
  });

  // Copy buttons: data-copy names the element whose text goes to the clipboard.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent;
    var done = function () {
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);  // plain http: the text is selected for Ctrl+C
      button.textContent = "Press Ctrl+C";
    }
  });

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function escapeHtml(text) {
    var div = document.createElement("div");
    div.textContent = text;
    return div.innerHTML;
  }
})();
