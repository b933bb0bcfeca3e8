// Facet console: small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Ask before destructive actions (forms marked data-confirm, or bulk actions listed on the form).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    var bulkList = form.getAttribute("data-confirm-actions");
    if (bulkList) {
      var select = form.querySelector("[name=action]");
      var action = select.value;
      var scope = form.querySelector("[name=scope]:checked");
      // A whole filter's scope is named by the server's confirmation page (count and names) instead.
      if (bulkList.split(",").indexOf(action) >= 0 && !(scope && scope.value === "all")) {
        var label = select.options ? select.options[select.selectedIndex].text : action;
        question = label + ": " + countSelected(form) + " VMs?";
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
        showError(result, ["Give a name and choose a file."]);
        return;
      }
      if (file.size === 0) {
        showError(result, ["File: " + file.name + " is empty (0 bytes); choose the image file itself."]);
        return;
      }
      var params = new URLSearchParams({ name: form.name.value, kind: form.kind.value, container: form.container.value });
      // Ask first whether the console would take it (a name in use, too big), before sending gigabytes.
      var check = new URLSearchParams(params);
      check.set("size", file.size);
      fetch(form.getAttribute("data-check-url") + "?" + check.toString(), { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (answer.ok) send(form, file, params, result);
          else showError(result, answer.problems);
        }, function () { send(form, file, params, result); });  // the upload checks it all again
    });
  });

  // The API's field names, as the upload form labels them.
  var UPLOAD_LABELS = { name: "Name", kind: "Kind", container: "Storage container", file: "File" };

  function send(form, file, params, result) {
    var bar = document.getElementById("upload-progress");
    var request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("data-upload-url") + "?" + params.toString());
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Content-Type", "application/octet-stream");
    result.innerHTML = "";
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
        var lines = Object.keys(body).map(function (k) {
          var label = k === "detail" ? "" : (UPLOAD_LABELS[k] || k) + ": ";
          return label + [].concat(body[k]).join(" ");
        });
        showError(result, lines.length ? lines : ["The upload failed (HTTP " + request.status + ")."]);
      }
    };
    request.onerror = function () {
      showError(result, ["The upload was cut off; nothing was kept."]);
    };
    request.send(file);
  }

  function showError(result, lines) {
    result.innerHTML = '<div class="message message-error">' + lines.map(escapeHtml).join("<br>") + "</div>";
  }

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
