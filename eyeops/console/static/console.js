// The review console's only script: mark a failed exam's screen corners, draw a device's boxes.
(function () {
  "use strict";

  // -- corners on the original image of an exam that failed alignment --------------------------
  var original = document.getElementById("original");
  var cornersInput = document.getElementById("corners");
  if (original && cornersInput) {
    var points = [];
    original.style.cursor = "crosshair";
    original.addEventListener("click", function (event) {
      var rect = original.getBoundingClientRect();
      var width = Number(original.dataset.width) || original.naturalWidth;
      var height = Number(original.dataset.height) || original.naturalHeight;
      var x = (event.clientX - rect.left) * width / rect.width;
      var y = (event.clientY - rect.top) * height / rect.height;
      if (points.length === 4) { points = []; }
      points.push(Math.round(x) + "," + Math.round(y));
      cornersInput.value = points.join(";");
    });
  }

  // -- boxes on a sample export (devices page) --------------------------------------------------
  var canvas = document.getElementById("canvas");
  var sample = document.getElementById("sample");
  var boxesInput = document.getElementById("boxes");
  var table = document.getElementById("box-table");
  var types = document.getElementById("types");
  if (!canvas || !sample || !boxesInput) { return; }
  var ctx = canvas.getContext("2d");
  var image = null;
  var scale = 1;
  var boxes = [];
  var start = null;

  function redraw(extra) {
    if (!image) { return; }
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 2;
    boxes.concat(extra ? [extra] : []).forEach(function (b) {
      ctx.strokeStyle = "#e0701a";
      ctx.strokeRect(b.x * scale, b.y * scale, b.w * scale, b.h * scale);
      ctx.fillStyle = "#b04a00";
      ctx.fillText(b.name || "", b.x * scale, b.y * scale - 3);
    });
  }

  function sync() {
    boxesInput.value = JSON.stringify(boxes);
    redraw();
  }

  function addRow(box) {
    var row = table.insertRow(-1);
    function cell(html) { var c = row.insertCell(-1); c.innerHTML = html; return c; }
    var name = cell('<input class="box-name" size="14" required>').firstChild;
    var type = cell('<select class="box-type">' + types.innerHTML + "</select>").firstChild;
    var unit = cell('<input class="box-unit" size="4">').firstChild;
    var decimals = cell('<input class="box-decimals" size="2" value="0">').firstChild;
    var low = cell('<input class="box-low" size="6">').firstChild;
    var high = cell('<input class="box-high" size="6">').firstChild;
    cell([box.x, box.y, box.w, box.h].join(", "));
    var remove = cell('<button type="button">remove</button>').firstChild;
    function update() {
      box.name = name.value.trim(); box.type = type.value; box.unit = unit.value;
      box.decimals = decimals.value; box.low = low.value; box.high = high.value;
      sync();
    }
    [name, type, unit, decimals, low, high].forEach(function (el) { el.addEventListener("input", update); el.addEventListener("change", update); });
    remove.addEventListener("click", function () { boxes.splice(boxes.indexOf(box), 1); row.remove(); sync(); });
    update();
    name.focus();
  }

  sample.addEventListener("change", function () {
    var file = sample.files && sample.files[0];
    if (!file) { return; }
    var img = new Image();
    img.onload = function () {
      image = img;
      scale = Math.min(1, 1000 / img.naturalWidth);
      canvas.width = Math.round(img.naturalWidth * scale);
      canvas.height = Math.round(img.naturalHeight * scale);
      redraw();
    };
    img.src = URL.createObjectURL(file);
  });

  function at(event) {
    var rect = canvas.getBoundingClientRect();
    return { x: (event.clientX - rect.left) / scale, y: (event.clientY - rect.top) / scale };
  }
  canvas.addEventListener("mousedown", function (event) { if (image) { start = at(event); } });
  canvas.addEventListener("mousemove", function (event) {
    if (!start) { return; }
    var p = at(event);
    redraw({ x: Math.min(start.x, p.x), y: Math.min(start.y, p.y), w: Math.abs(p.x - start.x), h: Math.abs(p.y - start.y) });
  });
  canvas.addEventListener("mouseup", function (event) {
    if (!start) { return; }
    var p = at(event);
    var box = {
      x: Math.round(Math.min(start.x, p.x)), y: Math.round(Math.min(start.y, p.y)),
      w: Math.round(Math.abs(p.x - start.x)), h: Math.round(Math.abs(p.y - start.y))
    };
    start = null;
    if (box.w < 4 || box.h < 4) { redraw(); return; }
    boxes.push(box);
    addRow(box);
  });
})();
