// The new-generation form's live total: what this generation will cost, from the price per pose
// the server computed (posegen.credits.pricing), times the poses ticked (one for a text pose)
// and the variations. The server charges the same figure at submit; this only shows it early.
(function () {
  "use strict";
  var form = document.getElementById("generation-form");
  var line = document.getElementById("generation-cost");
  var out = document.getElementById("cost-total");
  if (!form || !line || !out) { return; }
  var perPose = parseInt(line.getAttribute("data-per-pose"), 10) || 0;

  function update() {
    var mode = form.querySelector("input[name='mode']:checked");
    var poses = mode && mode.value === "text" ? 1 : form.querySelectorAll("input[name='pose_id']:checked").length;
    var variations = parseInt(form.querySelector("#variations").value, 10);
    if (!(variations > 0)) { variations = 0; }
    out.textContent = String(poses * variations * perPose);
  }

  form.addEventListener("change", update);
  form.addEventListener("input", update);
  update();
})();
