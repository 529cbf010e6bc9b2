/**
 * The chat panel: history (paged), live messages, mentions, clickable cell
 * references, editing and deleting one's own messages, who is typing.
 * Message text is always rendered as text (docs/chat.md).
 */
import { tokenize, type ChatRef } from "./chattext";
import type { Json } from "./connection";
import { textDialog } from "./dialog";
import { h, clear, timeAgo, userColor, toast } from "./dom";
import type { NotebookView } from "./notebook";
import { canRead } from "./protocol";

export interface ChatMessage {
  id: number;
  author: string;
  text: string;
  created_at: number;
  edited_at: number | null;
  deleted: boolean;
  mentions: string[];
  mentioned: boolean;
  refs: ChatRef[];
}

export class ChatPanel {
  readonly el: HTMLElement;
  private list: HTMLElement;
  private input: HTMLTextAreaElement;
  private typingEl: HTMLElement;
  private olderBtn: HTMLButtonElement;
  private messages = new Map<number, ChatMessage>();
  private nextBefore: number | null = null;
  private typingTimer: ReturnType<typeof setTimeout> | null = null;
  private unread = 0;

  constructor(private nb: NotebookView) {
    this.list = h("ol", { class: "chat-list", "aria-live": "polite" });
    this.input = h("textarea", { class: "chat-input", rows: "2", placeholder: "Message… (@name mentions, #cell links; Enter sends)", "aria-label": "chat message" });
    this.typingEl = h("div", { class: "chat-typing" });
    this.olderBtn = h("button", { class: "link chat-older", hidden: true, onclick: () => void this.loadOlder() }, "older messages");
    const form = h("form", { class: "chat-form" }, this.input, h("button", { type: "submit", class: "chat-send" }, "Send"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.send();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        void this.send();
      }
    });
    this.input.addEventListener("input", () => this.typing(this.input.value.length > 0));
    this.input.addEventListener("blur", () => this.typing(false));
    this.el = h("aside", { class: "chat", "aria-label": "chat" }, h("div", { class: "chat-head" }, h("strong", {}, "Chat"), h("button", { class: "link", title: "Hide the chat", onclick: () => this.toggle(false) }, "×")), this.olderBtn, this.list, this.typingEl, form);
    if (window.innerWidth < 900) this.el.hidden = true;
  }

  toggle(show?: boolean): void {
    const hadFocus = this.el.contains(document.activeElement);
    this.el.hidden = show === undefined ? !this.el.hidden : !show;
    // the focus would be lost with the panel (its ×): it goes to the toolbar's Chat button
    if (this.el.hidden && hadFocus) document.querySelector<HTMLElement>(".chat-btn")?.focus();
    if (!this.el.hidden) {
      this.unread = 0;
      this.updateBadge();
      this.input.focus();
    }
  }

  private updateBadge(): void {
    const btn = document.querySelector(".chat-btn");
    if (btn) btn.textContent = this.unread ? `Chat (${this.unread})` : "Chat";
  }

  onWelcome(): void {
    if (!canRead(this.nb.conn.caps.notebook)) return;
    void this.nb.conn
      .command("chat_history", {})
      .then((ack) => {
        for (const m of (ack.messages as ChatMessage[]) ?? []) this.messages.set(m.id, m);
        this.nextBefore = (ack.next_before as number | null) ?? null;
        this.render();
      })
      .catch(() => undefined);
  }

  onCaps(): void {
    this.input.disabled = !canRead(this.nb.conn.caps.notebook);
  }

  private async loadOlder(): Promise<void> {
    if (this.nextBefore === null) return;
    const ack = await this.nb.cmd("chat_history", { before: this.nextBefore });
    if (!ack) return;
    for (const m of (ack.messages as ChatMessage[]) ?? []) this.messages.set(m.id, m);
    this.nextBefore = (ack.next_before as number | null) ?? null;
    this.render(false);
  }

  onMessage(m: Json): void {
    if (m.type === "chat" || m.type === "chat_edit") {
      const msg = m.message as ChatMessage;
      const isNew = !this.messages.has(msg.id);
      this.messages.set(msg.id, msg);
      this.render();
      if (isNew && msg.author !== this.nb.cfg.user.name) {
        if (this.el.hidden) {
          this.unread++;
          this.updateBadge();
        }
        if (msg.mentioned) toast(`${msg.author} mentioned you in the chat`);
      }
    } else if (m.type === "chat_delete") {
      const old = this.messages.get(Number(m.id));
      if (old) {
        this.messages.set(old.id, { ...old, deleted: true, text: "", mentions: [], refs: [] });
        this.render();
      }
    }
  }

  private async send(): Promise<void> {
    const text = this.input.value;
    if (!text.trim()) return;
    const ack = await this.nb.cmd("chat", { text });
    if (!ack) return;
    this.input.value = "";
    this.typing(false);
    const msg = ack.message as ChatMessage | undefined;
    if (msg && !this.messages.has(msg.id)) {
      this.messages.set(msg.id, msg);
      this.render();
    }
    for (const w of (ack.warnings as { message: string }[]) ?? []) toast(w.message);
  }

  private typing(on: boolean): void {
    if (this.typingTimer) clearTimeout(this.typingTimer);
    this.nb.conn.setPresence({ typing: on ? true : undefined });
    if (on) this.typingTimer = setTimeout(() => this.nb.conn.setPresence({ typing: undefined }), 4000);
  }

  renderTyping(): void {
    const names = new Set<string>();
    const me = this.nb.conn.awareness.clientID;
    this.nb.conn.awareness.getStates().forEach((raw, id) => {
      const st = raw as { user?: { name?: string }; typing?: boolean };
      if (id !== me && st.typing && st.user?.name && st.user.name !== this.nb.cfg.user.name) names.add(st.user.name);
    });
    const list = [...names];
    this.typingEl.textContent = list.length === 0 ? "" : list.length === 1 ? `${list[0]} is typing…` : `${list.join(", ")} are typing…`;
  }

  private render(stick = true): void {
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    clear(this.list);
    const sorted = [...this.messages.values()].sort((a, b) => a.id - b.id);
    for (const m of sorted) this.list.appendChild(this.renderMessage(m));
    this.olderBtn.hidden = this.nextBefore === null;
    if (stick && (atBottom || sorted.length < 30)) this.list.scrollTop = this.list.scrollHeight;
  }

  private renderMessage(m: ChatMessage): HTMLElement {
    const me = this.nb.cfg.user.name;
    const li = h("li", { class: `chat-msg${m.mentioned ? " mentioned" : ""}${m.author === me ? " mine" : ""}`, "data-id": String(m.id) });
    const when = h("time", { title: new Date(m.created_at * 1000).toLocaleString() }, timeAgo(m.created_at));
    li.appendChild(h("div", { class: "chat-meta" }, h("span", { class: "chat-author", style: `color:${userColor(m.author)}` }, m.author), " ", when, m.edited_at ? h("span", { class: "chat-edited" }, " (edited)") : null));
    const body = h("div", { class: "chat-text" });
    if (m.deleted) body.appendChild(h("em", { class: "chat-deleted" }, "message deleted"));
    else {
      for (const t of tokenize(m.text, m.mentions, m.refs)) {
        if (t.kind === "text") body.appendChild(document.createTextNode(t.text));
        else if (t.kind === "mention") body.appendChild(h("span", { class: `mention${t.name === me ? " mention-me" : ""}` }, t.text));
        else if (t.readable) body.appendChild(h("button", { class: "link cell-ref", title: "Show this cell", onclick: () => this.nb.scrollTo(t.cellId) }, t.text));
        else body.appendChild(h("span", { class: "cell-ref cell-ref-hidden", title: "a cell you may not see" }, t.text));
      }
    }
    li.appendChild(body);
    if (!m.deleted) {
      const tools = h("div", { class: "chat-tools" });
      if (m.author === me) tools.appendChild(h("button", { class: "link", onclick: () => void this.edit(m) }, "edit"));
      if (m.author === me || this.nb.conn.caps.owner || this.nb.conn.caps.admin) tools.appendChild(h("button", { class: "link", onclick: () => void this.nb.cmd("chat_delete", { id: m.id }) }, "delete"));
      if (tools.hasChildNodes()) li.appendChild(tools);
    }
    return li;
  }

  private async edit(m: ChatMessage): Promise<void> {
    const text = await textDialog({ title: "Edit your message", label: "Message (Enter saves, Shift-Enter starts a new line)", value: m.text, confirm: "Save" });
    if (text === null || text === m.text) return;
    await this.nb.cmd("chat_edit", { id: m.id, text });
  }
}
