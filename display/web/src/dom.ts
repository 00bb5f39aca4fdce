/** A few lines instead of a framework: build elements with attributes and children, never via innerHTML. */

type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) if (value !== undefined) element.setAttribute(name, value);
  for (const child of children) if (child !== null && child !== undefined && child !== false) element.append(child);
  return element;
}

/** A text node kept by reference, so a frequent update touches only its data and not the element tree. */
export function textNode(text = ''): Text {
  return document.createTextNode(text);
}

/** Sets a text node only when its text changes: the cheapest DOM write is the one not made. */
export function setText(node: Text, text: string): void {
  if (node.data !== text) node.data = text;
}

/** Sets an attribute only when its value changes. */
export function setAttr(element: Element, name: string, value: string): void {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

/** Calls `flush` once in the next animation frame however often it is scheduled before then. */
export function frameBatcher(flush: () => void): { schedule(): void; cancel(): void } {
  let handle: number | null = null;
  return {
    schedule() {
      handle ??= requestAnimationFrame(() => {
        handle = null;
        flush();
      });
    },
    cancel() {
      if (handle !== null) cancelAnimationFrame(handle);
      handle = null;
    },
  };
}
