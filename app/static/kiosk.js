/* The fitting-room kiosk page: carried items in, outfits from this store's shelves out, chosen
   items to the shopper's online cart. Talks only to the service that served it. An API key given
   in the URL fragment (#key=...) is kept in sessionStorage and sent as a Bearer token; it never
   goes into a query string. */
"use strict";

(function () {
  const ID_PATTERN = /^[A-Za-z0-9._:@+\-]{1,128}$/;
  const KEY_STORAGE = "lookbook.kiosk.key";
  const MAX_CARRIED = 5;
  const OCCASIONS = ["everyday", "work", "party", "date", "wedding", "vacation", "sport"];
  const FITS = [["too_small", "Too small"], ["fits", "Fits"], ["too_large", "Too large"]];
  const COLOURS = {
    black: "#1b1b1b", white: "#fafafa", navy: "#1f2a44", grey: "#8d8d8d", gray: "#8d8d8d",
    beige: "#d9c7a7", cream: "#f3ead3", brown: "#6b4a2f", camel: "#c19a6b", khaki: "#a39a6b",
    olive: "#6b6b2f", green: "#2f7a45", blue: "#2f5fb3", "light blue": "#9cc3e6",
    red: "#c0392b", burgundy: "#7a1f2f", pink: "#f0a5b8", yellow: "#f2cd45",
    orange: "#e8843a", purple: "#6d4c9b", "off white": "#f4efe4", metal: "#b9b9b9",
    gold: "#c9a646", silver: "#c0c0c0", multicolour: "#c0c0c0",
  };

  const params = new URLSearchParams(window.location.search);
  const state = {
    store: params.get("store") || "",
    key: readKey(),
    customer: "",
    occasion: null,
    carried: [],
    chosen: new Map(),
    recommendationId: null,
    sequence: 0,
  };

  const $ = (id) => document.getElementById(id);

  function readKey() {
    const hash = window.location.hash.replace(/^#/, "");
    const fromHash = new URLSearchParams(hash).get("key");
    if (fromHash) {
      sessionStorage.setItem(KEY_STORAGE, fromHash);
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return sessionStorage.getItem(KEY_STORAGE);
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.entries(props || {}).forEach(([name, value]) => {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    });
    (children || []).forEach((child) => child && node.appendChild(child));
    return node;
  }

  function swatch(colour) {
    const node = el("span", { class: "swatch", "aria-hidden": "true" });
    const css = colour ? COLOURS[colour.toLowerCase()] : null;
    if (css) node.style.background = css;
    return node;
  }

  function money(value) {
    return "€" + Number(value).toFixed(2);
  }

  // -- messages ------------------------------------------------------------------------------

  function showMessage(text) {
    const box = $("message");
    box.textContent = text;
    box.hidden = false;
  }

  function clearMessage() {
    $("message").hidden = true;
    $("message").textContent = "";
  }

  class ServiceError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function explain(error, itemId) {
    if (!(error instanceof ServiceError)) {
      return "We can't reach the service right now. Please try again in a moment, or ask a member of staff.";
    }
    if (error.status === 401) {
      return "This kiosk is not signed in to the service (its API key is missing or wrong). Please ask a member of staff.";
    }
    if (error.status === 403) {
      return "This kiosk's API key is not allowed to use the kiosk. Please ask a member of staff.";
    }
    if (error.code === "unknown_item") {
      const id = itemId || (error.message.match(/'([^']+)'/) || [])[1] || "";
      return `We don't know the item number “${id}”. Check the number on the label and try again.`;
    }
    if (error.code === "unknown_store") {
      return `This kiosk's store “${state.store}” is unknown to the service. Please ask a member of staff.`;
    }
    if (error.status === 503) {
      return "The service is starting up or busy. Please try again in a moment.";
    }
    return error.message || "Something went wrong. Please try again.";
  }

  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.key) headers.Authorization = "Bearer " + state.key;
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "same-origin",
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch (err) {
      payload = null;
    }
    if (!response.ok) {
      const error = (payload && payload.error) || {};
      throw new ServiceError(response.status, error.code || "http_" + response.status, error.message || "");
    }
    return payload;
  }

  // -- carried items -------------------------------------------------------------------------

  function adviceQuery(item) {
    const query = new URLSearchParams({ store_id: state.store });
    if (state.customer) query.set("customer_id", state.customer);
    if (item.size) {
      query.set("tried_size", item.size);
      query.set("tried_fit", item.fit || "fits");
    }
    return `/v1/items/${encodeURIComponent(item.item_id)}/size-advice?${query}`;
  }

  async function addItem(raw) {
    const itemId = raw.trim();
    if (!itemId) return;
    clearMessage();
    if (!ID_PATTERN.test(itemId)) {
      showMessage(`“${itemId}” is not an item number. Check the number on the label and try again.`);
      return;
    }
    if (state.carried.some((c) => c.item_id === itemId)) {
      showMessage(`You already added ${itemId}.`);
      return;
    }
    if (state.carried.length >= MAX_CARRIED) {
      showMessage(`Up to ${MAX_CARRIED} items at a time — remove one first.`);
      return;
    }
    const item = { item_id: itemId, size: null, fit: null, advice: null, info: null };
    try {
      item.advice = await call("GET", adviceQuery(item));
    } catch (error) {
      showMessage(explain(error, itemId));
      return;
    }
    state.carried.push(item);
    $("item-input").value = "";
    renderCarried();
    await loadOutfits();
  }

  async function refreshAdvice(item) {
    try {
      item.advice = await call("GET", adviceQuery(item));
    } catch (error) {
      showMessage(explain(error, item.item_id));
    }
  }

  function adviceLine(item) {
    const advice = item.advice;
    const line = el("div", { class: "advice" });
    if (!advice) return line;
    if (!advice.recommended) {
      line.textContent = "One size.";
      return line;
    }
    const here = advice.sizes.find((s) => s.size === advice.recommended);
    line.appendChild(el("span", { text: "Take " }));
    line.appendChild(el("strong", { text: advice.recommended }));
    let text = "";
    if (here && here.stock !== null) text = here.stock > 0 ? ` (${here.stock} here)` : " (sold out here)";
    if (advice.bring_along) {
      const along = advice.sizes.find((s) => s.size === advice.bring_along);
      const alongStock = along && along.stock !== null ? ` (${along.stock} here)` : "";
      text += `; we'll bring ${advice.bring_along} too${alongStock}`;
    }
    line.appendChild(el("span", { text: text + ". " + advice.reason + "." }));
    return line;
  }

  function renderCarried() {
    const list = $("carried");
    list.textContent = "";
    state.carried.forEach((item) => {
      const info = item.info || {};
      const sizes = item.advice ? item.advice.sizes.map((s) => s.size) : [];
      const select = el("select", {
        "aria-label": `Size you tried of ${item.item_id}`,
        onchange: async (event) => {
          item.size = event.target.value || null;
          item.fit = item.size ? item.fit || "fits" : null;
          await refreshAdvice(item);
          renderCarried();
          await loadOutfits();
        },
      }, [el("option", { value: "", text: "Size tried…" })].concat(
        sizes.map((s) => {
          const option = el("option", { value: s, text: s });
          if (s === item.size) option.selected = true;
          return option;
        })
      ));
      const fitButtons = FITS.map(([value, label]) => el("button", {
        type: "button",
        class: "chip",
        "aria-pressed": String(item.size !== null && (item.fit || "fits") === value),
        text: label,
        onclick: async () => {
          item.fit = value;
          await refreshAdvice(item);
          renderCarried();
          await loadOutfits();
        },
      }));
      fitButtons.forEach((b) => { b.disabled = !item.size; });
      const row = el("li", { "data-item": item.item_id }, [
        swatch(info.colour),
        el("div", {}, [
          el("div", { class: "name", text: info.name || item.item_id }),
          el("div", { class: "label", text: info.name ? `${item.item_id} · ${money(info.price)}` : item.item_id }),
        ]),
        el("button", {
          type: "button", class: "remove", text: "Remove",
          onclick: async () => {
            state.carried = state.carried.filter((c) => c !== item);
            renderCarried();
            await loadOutfits();
          },
        }),
        adviceLine(item),
        sizes.length ? el("div", { class: "fitrow" }, [select].concat(fitButtons)) : null,
      ]);
      list.appendChild(row);
    });
  }

  // -- outfits -------------------------------------------------------------------------------

  async function loadOutfits() {
    const sequence = ++state.sequence;
    state.chosen.clear();
    updateCart();
    if (!state.carried.length) {
      state.recommendationId = null;
      $("outfits").textContent = "";
      $("elsewhere").hidden = true;
      $("results-hint").hidden = false;
      return;
    }
    const body = {
      store_id: state.store,
      items: state.carried.map((c) => (c.size ? { item_id: c.item_id, size: c.size, fit: c.fit || "fits" } : { item_id: c.item_id })),
    };
    if (state.customer) body.customer_id = state.customer;
    if (state.occasion) body.occasion = state.occasion;
    $("results-hint").textContent = "Finding outfits…";
    $("results-hint").hidden = false;
    let result;
    try {
      result = await call("POST", "/v1/kiosk/outfits", body);
    } catch (error) {
      if (sequence !== state.sequence) return;
      $("results-hint").textContent = "";
      showMessage(explain(error));
      return;
    }
    if (sequence !== state.sequence) return; // a newer request is on its way
    clearMessage();
    state.recommendationId = result.recommendation_id;
    result.carried.forEach((info) => {
      const item = state.carried.find((c) => c.item_id === info.item_id);
      if (item) {
        item.info = info;
        item.advice = Object.assign({}, item.advice || {}, info.size_advice);
      }
    });
    renderCarried();
    renderOutfits(result);
  }

  function card(entry) {
    const lowStock = entry.size_stock <= 2;
    const stockText = entry.availability === "in_store"
      ? `${entry.size_stock} in ${entry.size} here` + (entry.bring_along
        ? ` · ${entry.bring_along_stock || 0} in ${entry.bring_along}` : "")
      : entry.locations.map((l) => `${l.store_id === "online" ? "Online" : l.store_id}: ${l.stock}`).join(" · ");
    const button = el("button", {
      type: "button",
      class: "card",
      "aria-pressed": "false",
      "data-item": entry.item_id,
      "data-size": entry.size || "",
      "data-position": String(entry.position),
      "data-availability": entry.availability,
      onclick: () => toggle(entry, button),
    }, [
      el("div", { class: "top-line" }, [
        swatch(entry.colour),
        el("div", {}, [
          el("div", { class: "cat", text: entry.category }),
          el("div", { class: "price", text: money(entry.price) }),
        ]),
      ]),
      el("div", { class: "name", text: entry.name }),
      el("div", { class: "size" }, entry.size ? [
        el("span", { text: "Take " }),
        el("strong", { text: entry.size }),
        entry.bring_along ? el("span", { text: ` · bring ${entry.bring_along}` }) : null,
      ] : [el("span", { text: "One size" })]),
      el("div", { class: "stock" + (lowStock && entry.availability === "in_store" ? " low" : ""), text: stockText }),
      el("div", { class: "why", text: entry.reason }),
      el("div", { class: "pick", text: "Tap to choose" }),
    ]);
    return button;
  }

  function renderOutfits(result) {
    const box = $("outfits");
    box.textContent = "";
    if (!result.outfits.length) {
      $("results-hint").textContent = "Nothing on our shelves completes this in your size right now.";
      $("results-hint").hidden = false;
    } else {
      $("results-hint").textContent = result.occasion
        ? `For ${result.occasion} · ${result.season}`
        : `Made for ${result.season}`;
    }
    result.outfits.forEach((outfit) => {
      const cards = el("div", { class: "cards" + (outfit.items.length > 3 ? " four" : "") }, outfit.items.map(card));
      box.appendChild(el("article", { class: "outfit", "data-outfit": String(outfit.outfit) }, [
        el("div", { class: "outfit-head" }, [
          el("h3", { text: `Outfit ${outfit.outfit}` }),
          el("span", { class: "match", text: `${outfit.items.length} pieces from this store` }),
        ]),
        cards,
      ]));
    });
    const elsewhere = $("elsewhere");
    elsewhere.textContent = "";
    elsewhere.hidden = !result.elsewhere.length;
    if (result.elsewhere.length) {
      elsewhere.appendChild(el("h3", { text: "Great matches, not here in your size" }));
      elsewhere.appendChild(el("div", { class: "cards" }, result.elsewhere.map(card)));
    }
  }

  // -- cart ----------------------------------------------------------------------------------

  function toggle(entry, button) {
    const key = entry.item_id;
    if (state.chosen.has(key)) {
      state.chosen.delete(key);
    } else {
      state.chosen.set(key, { item_id: entry.item_id, size: entry.size, position: entry.position });
    }
    document.querySelectorAll(`.card[data-item="${CSS.escape(key)}"]`).forEach((node) => {
      node.setAttribute("aria-pressed", String(state.chosen.has(key)));
      node.querySelector(".pick").textContent = state.chosen.has(key) ? "✓ Chosen" : "Tap to choose";
    });
    updateCart();
  }

  function updateCart() {
    const count = state.chosen.size;
    $("send-cart").disabled = count === 0;
    const status = $("cart-status");
    status.classList.remove("done");
    status.textContent = count ? `${count} item${count > 1 ? "s" : ""} chosen` : "Tap items to choose them.";
  }

  async function sendCart() {
    clearMessage();
    const customer = $("customer-input").value.trim();
    if (!customer) {
      showMessage("Scan your loyalty card first — that's how we find your online cart.");
      $("customer-input").focus();
      return;
    }
    if (!ID_PATTERN.test(customer)) {
      showMessage("That loyalty card number doesn't look right. Please scan it again.");
      return;
    }
    const items = Array.from(state.chosen.values()).map((c) => {
      const line = { item_id: c.item_id, position: c.position };
      if (c.size) line.size = c.size;
      return line;
    });
    const body = { customer_id: customer, store_id: state.store, items };
    if (state.recommendationId) body.recommendation_id = state.recommendationId;
    $("send-cart").disabled = true;
    try {
      const result = await call("POST", "/v1/kiosk/cart", body);
      const status = $("cart-status");
      status.textContent = `✓ ${result.accepted} item${result.accepted > 1 ? "s" : ""} sent to your online cart`;
      status.classList.add("done");
      state.chosen.clear();
      document.querySelectorAll(".card[aria-pressed='true']").forEach((node) => {
        node.setAttribute("aria-pressed", "false");
        node.querySelector(".pick").textContent = "✓ In your cart";
      });
    } catch (error) {
      showMessage(explain(error));
      $("send-cart").disabled = state.chosen.size === 0;
    }
  }

  // -- set-up --------------------------------------------------------------------------------

  function renderOccasions() {
    const box = $("occasions");
    box.textContent = "";
    OCCASIONS.forEach((name) => {
      box.appendChild(el("button", {
        type: "button",
        class: "chip",
        "data-occasion": name,
        "aria-pressed": String(state.occasion === name),
        text: name.charAt(0).toUpperCase() + name.slice(1),
        onclick: async () => {
          state.occasion = state.occasion === name ? null : name;
          renderOccasions();
          await loadOutfits();
        },
      }));
    });
  }

  function start() {
    $("store-label").textContent = state.store ? `Fitting room · ${state.store}` : "Fitting room";
    renderOccasions();
    if (!state.store) {
      showMessage("This kiosk has no store set. Open it as /kiosk?store=<store id>.");
      $("add-button").disabled = true;
    }
    $("add-form").addEventListener("submit", (event) => {
      event.preventDefault();
      addItem($("item-input").value);
    });
    $("customer-input").addEventListener("change", async () => {
      const value = $("customer-input").value.trim();
      if (value && !ID_PATTERN.test(value)) {
        showMessage("That loyalty card number doesn't look right. Please scan it again.");
        return;
      }
      state.customer = value;
      await Promise.all(state.carried.map(refreshAdvice));
      renderCarried();
      await loadOutfits();
    });
    $("send-cart").addEventListener("click", sendCart);
    $("reset").addEventListener("click", () => {
      state.carried = [];
      state.occasion = null;
      state.customer = "";
      $("customer-input").value = "";
      $("item-input").value = "";
      clearMessage();
      renderOccasions();
      renderCarried();
      loadOutfits();
      $("results-hint").textContent = "Add an item to see outfits made from what is on our shelves, in your size.";
    });
    $("item-input").focus();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
