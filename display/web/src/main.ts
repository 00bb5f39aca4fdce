/**
 * The sensorpipe dashboard: the page shell, the hash router (#/ fleet, #/device/<id> one device,
 * #/quarantine the rejected messages), the connection badge, the banner of firing alerts
 * (alerts-banner.ts) and the token form. Talks to the display server it was served by: the HTTP API
 * (api.ts) and the /live WebSocket (live.ts). Built by ../build.ts into ../dist/.
 */
import { alertBanner } from './alerts-banner.ts';
import { AlertsFeed } from './alerts-feed.ts';
import { tokenRefused } from './api.ts';
import { mountDeviceView } from './device-view.ts';
import { h, setAttr, setText, textNode } from './dom.ts';
import { mountFleetView } from './fleet-view.ts';
import { secondsUntil } from './format.ts';
import { LiveClient, type ConnectionState } from './live.ts';
import { mountQuarantineView } from './quarantine-view.ts';
import { parseRoute, quarantineHash } from './route.ts';
import { getToken, setToken } from './token.ts';
import { tokenForm } from './token-form.ts';
import type { Unmount, ViewContext } from './view.ts';

const CONNECTION_TEXT: Record<ConnectionState['kind'], string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting',
  token: 'token needed',
};

function start(): void {
  const live = new LiveClient({ tokenRefused });
  const alerts = new AlertsFeed();
  const main = h('main', { id: 'view' });
  const badgeText = textNode(CONNECTION_TEXT.connecting);
  const badge = h('span', { class: 'connection', 'data-connection': 'connecting', role: 'status' }, badgeText);
  const forget = h('button', { type: 'button', class: 'link', hidden: '' }, 'forget token');
  document.body.replaceChildren(
    h('header', {}, h('a', { class: 'brand', href: '#/' }, 'sensorpipe'), h('a', { class: 'nav', href: quarantineHash(), 'data-nav': 'quarantine' }, 'Quarantine'), h('span', { class: 'spacer' }), forget, badge),
    alertBanner(alerts),
    main,
  );

  let unmount: Unmount | null = null;
  let askingForToken = false;

  function renderBadge(): void {
    const state = askingForToken ? ({ kind: 'token' } as const) : live.state;
    setAttr(badge, 'data-connection', state.kind);
    setText(badgeText, state.kind === 'reconnecting' ? `reconnecting in ${secondsUntil(state.retryAt, Date.now())} s` : CONNECTION_TEXT[state.kind]);
    forget.hidden = getToken() === null;
  }

  function showRoute(): void {
    unmount?.();
    unmount = null;
    main.replaceChildren();
    askingForToken = false;
    renderBadge();
    const route = parseRoute(location.hash);
    document.title = route.view === 'device' ? `${route.id} · sensorpipe` : route.view === 'quarantine' ? 'Quarantine · sensorpipe' : 'Fleet · sensorpipe';
    unmount =
      route.view === 'device' ? mountDeviceView(main, context, route.id, route.range) : route.view === 'quarantine' ? mountQuarantineView(main, context, route) : mountFleetView(main, context);
  }

  function askForToken(): void {
    if (askingForToken) return;
    unmount?.();
    unmount = null;
    askingForToken = true;
    renderBadge();
    main.replaceChildren(
      tokenForm((token) => {
        setToken(token);
        live.connectNow();
        void alerts.refresh();
        showRoute();
      }),
    );
  }

  const context: ViewContext = { live, alerts, authRequired: askForToken };
  live.onState((state) => {
    if (state.kind === 'token') askForToken();
    else renderBadge();
  });
  // The countdown in "reconnecting in N s" moves on its own.
  setInterval(() => {
    if (live.state.kind === 'reconnecting') renderBadge();
  }, 500);
  forget.addEventListener('click', () => {
    setToken(null);
    live.connectNow();
    showRoute();
  });
  window.addEventListener('hashchange', showRoute);
  live.start();
  alerts.start();
  showRoute();
}

start();
