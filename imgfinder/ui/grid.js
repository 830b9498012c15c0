// The result grid: justified rows of thumbnails that keep their aspect ratio, a score badge,
// a video's matching moments on a strip, and clicks reported to Python as trigger values.
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let grid = parentElement.querySelector(".grid");
  if (!grid) {
    grid = document.createElement("div");
    grid.className = "grid";
    grid.setAttribute("role", "list");
    parentElement.appendChild(grid);
  }
  grid.style.setProperty("--row", `${data.row_height}px`);
  grid.replaceChildren(...data.tiles.map((tile, index) => makeTile(tile, index)));

  function makeTile(tile, index) {
    const figure = document.createElement("figure");
    figure.className = `tile ${tile.kind}`;
    figure.style.setProperty("--ratio", String(tile.ratio));
    figure.tabIndex = 0;
    figure.title = tile.title;
    figure.setAttribute("role", "listitem");
    figure.setAttribute("aria-label", tile.label);
    figure.dataset.item = String(tile.id);
    figure.dataset.name = tile.full_name;
    const open = () => setTriggerValue("open", index);
    figure.addEventListener("click", open);
    figure.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        open();
      }
    });
    const frame = document.createElement("div");
    frame.className = "frame";
    if (tile.src) {
      const image = document.createElement("img");
      image.src = tile.src;
      image.alt = tile.name;
      image.decoding = "async";
      frame.appendChild(image);
    } else {
      frame.classList.add("missing");
      frame.textContent = data.no_preview;
    }
    frame.appendChild(badge("score", tile.badge, tile.badge_help));
    if (tile.when) frame.appendChild(badge("when", `▶ ${tile.when}`, tile.moments_help));
    if (tile.marks) frame.appendChild(strip(tile.marks, index));
    const like = document.createElement("button");
    like.className = "like";
    like.type = "button";
    like.title = data.like_label;
    like.setAttribute("aria-label", data.like_label);
    like.textContent = "✦";
    like.addEventListener("click", (event) => {
      event.stopPropagation();
      setTriggerValue("like", index);
    });
    frame.appendChild(like);
    figure.appendChild(frame);
    const caption = document.createElement("figcaption");
    caption.textContent = tile.name;
    figure.appendChild(caption);
    return figure;
  }

  function badge(kind, text, help) {
    const span = document.createElement("span");
    span.className = `badge ${kind}`;
    span.textContent = text;
    if (help) span.title = help;
    return span;
  }

  // A video's length as a bar with each matching moment marked; a mark opens that moment.
  function strip(marks, index) {
    const bar = document.createElement("div");
    bar.className = "strip";
    marks.forEach((mark, moment) => {
      const tick = document.createElement("i");
      tick.style.left = `${mark.left}%`;
      tick.style.width = `${mark.width}%`;
      tick.title = mark.label;
      tick.addEventListener("click", (event) => {
        event.stopPropagation();
        setTriggerValue("moment", [index, moment]);
      });
      bar.appendChild(tick);
    });
    return bar;
  }
}
