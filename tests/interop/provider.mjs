// A headless, certified OpenID Provider (panva/oidc-provider) for httpx-refresh interop tests.
//
// Usage: node provider.mjs [port]   (or PORT=...; 0 or nothing = a free port)
// Prints "READY http://127.0.0.1:PORT" on stdout once it accepts connections, then one JSON
// line per token-endpoint event ({"event": "grant.success", ...}) without any token value.
//
// Besides the provider's own endpoints (/auth, /token, /token/revocation, /token/introspection,
// /jwks, ...), the same server answers:
//   GET /interaction/:uid  auto-approves the pending interaction for account "test-user"
//                           (no browser, no login form): grants the requested scopes and
//                           resumes the authorization request, which redirects to /cb?code=...
//   GET /cb                echoes the authorization response as JSON
//   GET /api/items         a protected resource: 200 JSON for a valid bearer access token
//                           (authorization code or client credentials), 401 with
//                           WWW-Authenticate: Bearer error="invalid_token" otherwise
//   GET /_test/grants      token-endpoint event counters (grant.success / grant.error per
//                           grant_type and client), recorded before the token response is sent

import crypto from 'node:crypto';
import http from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

export const CLIENTS = {
  basic: {
    client_id: 'interop-basic',
    // '+', '%' and ':' must survive RFC 6749 section 2.3.1 form-urlencoding in Basic auth.
    client_secret: 'b4sic+secret%41:with:colons+%2B',
    token_endpoint_auth_method: 'client_secret_basic',
  },
  post: {
    client_id: 'interop-post',
    client_secret: 'p0st-secret-for-form-body-auth',
    token_endpoint_auth_method: 'client_secret_post',
  },
};

const portArg = process.argv[2] ?? process.env.PORT ?? '0';
const requestedPort = Number.parseInt(portArg, 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error(`invalid port ${JSON.stringify(portArg)}`);
  process.exit(2);
}

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = http.createServer((req, res) => handler(req, res));

server.listen(requestedPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = makeProvider(issuer);
  handler = makeHandler(provider, issuer);
  console.log(`READY ${issuer}`);
});

function makeProvider(issuer) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', use: 'sig', alg: 'RS256' };

  const clients = Object.values(CLIENTS).map((client) => ({
    ...client,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: [`${issuer}/cb`],
    scope: 'openid offline_access api',
  }));

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access', 'api'],
    claims: { openid: ['sub'] },
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    ttl: {
      AccessToken: 3,
      ClientCredentials: 3,
      AuthorizationCode: 60,
      RefreshToken: 3600,
      Grant: 3600,
      Interaction: 300,
      Session: 3600,
      IdToken: 60,
    },
    rotateRefreshToken: true,
    clockTolerance: 0,
  });

  const counts = { success: {}, error: {} };
  provider.counts = counts;
  const record = (kind) => (ctx, err) => {
    const grantType = ctx.oidc?.params?.grant_type ?? 'unknown';
    const clientId = ctx.oidc?.client?.clientId ?? 'unknown';
    const key = `${grantType} ${clientId}`;
    counts[kind][key] = (counts[kind][key] ?? 0) + 1;
    const line = { event: `grant.${kind}`, grant_type: grantType, client_id: clientId };
    if (err) line.error = err.error ?? err.name;
    console.log(JSON.stringify(line));
  };
  provider.on('grant.success', record('success'));
  provider.on('grant.error', (ctx, err) => record('error')(ctx, err));
  provider.on('server_error', (_ctx, err) => console.error(`server_error: ${err?.stack ?? err}`));
  return provider;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

async function findAccessToken(provider, value) {
  const accessToken = await provider.AccessToken.find(value);
  if (accessToken) {
    // Revoking the refresh token revokes its grant: its access tokens must stop working too.
    const grant = accessToken.grantId ? await provider.Grant.find(accessToken.grantId) : undefined;
    return grant ? accessToken : undefined;
  }
  return provider.ClientCredentials.find(value);
}

async function protectedResource(provider, req, res) {
  const match = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '');
  const token = match ? await findAccessToken(provider, match[1]) : undefined;
  if (!token || token.isExpired) {
    send(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
    return;
  }
  send(res, 200, {
    items: [{ id: 1, name: 'first' }, { id: 2, name: 'second' }],
    client_id: token.clientId,
    account: token.accountId ?? null,
    kind: token.kind,
    scope: token.scope ?? null,
  });
}

async function approve(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  const accountId = details.session?.accountId ?? 'test-user';
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (prompt.details?.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  grant.addOIDCScope(String(params.scope ?? ''));
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

function makeHandler(provider, issuer) {
  const callback = provider.callback();
  return (req, res) => {
    const url = new URL(req.url, issuer);
    const route = async () => {
      if (req.method === 'GET' && url.pathname === '/api/items') return protectedResource(provider, req, res);
      if (req.method === 'GET' && url.pathname.startsWith('/interaction/')) return approve(provider, req, res);
      if (req.method === 'GET' && url.pathname === '/cb') return send(res, 200, Object.fromEntries(url.searchParams));
      if (req.method === 'GET' && url.pathname === '/_test/grants') return send(res, 200, provider.counts);
      return callback(req, res);
    };
    route().catch((err) => {
      console.error(`route error: ${err?.stack ?? err}`);
      if (!res.headersSent) send(res, 500, { error: 'server_error' });
      else res.end();
    });
  };
}

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
