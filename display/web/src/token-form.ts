/** The small form shown when the display asks for a viewer token (API 401 AUTH_REQUIRED, /live close 1008). */
import { h } from './dom.ts';
import { getToken } from './token.ts';

export function tokenForm(onSubmit: (token: string) => void): HTMLElement {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: '', 'aria-label': 'Viewer token', 'data-token-input': '' });
  const rejected = getToken() !== null;
  const form = h(
    'form',
    { class: 'token-form', 'data-token-form': '' },
    h('h2', {}, 'Viewer token needed'),
    h('p', {}, rejected ? 'The saved token was not accepted. Enter the current one.' : 'This display requires a viewer token (SENSORPIPE_VIEWER_TOKEN).'),
    // Password managers want a user name next to a password; the token has none, so a fixed hidden one.
    h('input', { type: 'text', name: 'username', value: 'viewer', autocomplete: 'username', hidden: '' }),
    input,
    h('button', { type: 'submit' }, 'Open dashboard'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token !== '') onSubmit(token);
  });
  queueMicrotask(() => input.focus());
  return form;
}
