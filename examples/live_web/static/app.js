// The blog, live: renders each view the server sends on /events (server-sent events), and
// sends the forms' changes to the JSON API. The page never re-reads anything itself: what
// it shows is what the store's live query last produced.
"use strict";

const postsEl = document.getElementById("posts");
const statusEl = document.getElementById("status");
const errorEl = document.getElementById("error");
const articles = new Map(); // post id -> its <article>, kept so forms keep what is typed

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

function showError(message) {
  errorEl.textContent = message;
  errorEl.hidden = !message;
}

// Calls the API; an error's message (the store's own) is shown on the page.
async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = `${method} ${path}: ${response.status}`;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON: keep the status */ }
    showError(message);
    return null;
  }
  showError("");
  return response.status === 204 ? {} : response.json();
}

function articleFor(post) {
  let article = articles.get(post.id);
  if (article) return article;
  const content = el("div", { className: "content" });
  const comment = el("input", { name: "content", placeholder: "Write a comment", required: true, autocomplete: "off" });
  comment.setAttribute("aria-label", "Comment");
  const commentForm = el("form", { className: "row comment-form" }, comment,
    el("button", { type: "submit", textContent: "Comment" }));
  commentForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await api("POST", `/api/posts/${post.id}/comments`, { content: comment.value })) comment.value = "";
  });
  const editor = el("input", { name: "username", placeholder: "Editor's username", required: true, autocomplete: "off" });
  editor.setAttribute("aria-label", "Editor's username");
  const editorForm = el("form", { className: "row editor-form" }, editor,
    el("button", { type: "submit", className: "quiet", textContent: "Add editor" }));
  editorForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await api("POST", `/api/posts/${post.id}/editors`, { username: editor.value })) editor.value = "";
  });
  const remove = el("button", { type: "button", className: "danger delete-post", textContent: "Delete post" });
  remove.addEventListener("click", () => api("DELETE", `/api/posts/${post.id}`));
  article = el("article", { className: "card post" }, content, commentForm, editorForm,
    el("div", { className: "row" }, remove));
  article.dataset.id = post.id;
  articles.set(post.id, article);
  return article;
}

function renderPost(post) {
  const article = articleFor(post);
  const comments = post.comments || [];
  const editors = post.editors || [];
  const list = el("ul", { className: "comments" });
  for (const c of comments) {
    const remove = el("button", { type: "button", className: "quiet", textContent: "×", title: "Delete comment" });
    remove.addEventListener("click", () => api("DELETE", `/api/comments/${c.id}`));
    const item = el("li", { className: "comment" }, el("span", { textContent: c.content || "" }), " ", remove);
    item.dataset.id = c.id;
    list.append(item);
  }
  const chips = el("div", { className: "editors" }, editors.length ? "Editors: " : "No editors");
  for (const u of editors) {
    const remove = el("button", { type: "button", textContent: "×", title: `Unlink ${u.username}` });
    remove.addEventListener("click", () => api("DELETE", `/api/posts/${post.id}/editors/${u.id}`));
    const chip = el("span", { className: "editor" }, u.username, remove);
    chip.dataset.id = u.id;
    chips.append(chip);
  }
  article.querySelector(".content").replaceChildren(
    el("h2", { textContent: post.title }),
    el("p", { className: "meta", textContent: `rating ${post.rating} · ${comments.length} comment${comments.length === 1 ? "" : "s"}` }),
    ...(post.body ? [el("p", { className: "body", textContent: post.body })] : []),
    comments.length ? list : el("p", { className: "empty", textContent: "No comments yet" }),
    chips,
  );
  return article;
}

function render(posts) {
  const seen = new Set(posts.map((p) => p.id));
  for (const [id, article] of articles) {
    if (!seen.has(id)) { article.remove(); articles.delete(id); }
  }
  let previous = null;
  for (const post of posts) {
    const article = renderPost(post);
    const expected = previous ? previous.nextSibling : postsEl.firstChild;
    if (article !== expected) postsEl.insertBefore(article, expected);
    previous = article;
  }
  if (!posts.length) postsEl.replaceChildren(el("p", { className: "empty", textContent: "No posts yet" }));
  else postsEl.querySelectorAll(":scope > p.empty").forEach((p) => p.remove());
}

document.getElementById("new-post").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const saved = await api("POST", "/api/posts", {
    title: form.title.value,
    body: form.body.value || null,
    rating: Number(form.rating.value) || 0,
  });
  if (saved) form.reset();
});

const events = new EventSource("/events");
events.addEventListener("open", () => {
  statusEl.textContent = "live";
  statusEl.classList.add("live");
});
events.addEventListener("error", () => {
  statusEl.textContent = "reconnecting…";
  statusEl.classList.remove("live");
});
events.addEventListener("posts", (event) => {
  render(JSON.parse(event.data));
  document.body.dataset.view = event.lastEventId;
});
events.addEventListener("failed", (event) => showError(`The live view failed: ${event.data}`));
