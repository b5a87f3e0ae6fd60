// A real OpenID provider for tests/tests/oidc.rs: oidc-provider on 127.0.0.1.
//
//   node provider.mjs <port> <redirect_uri> <api_audience> [kid_suffix]
//
// One confidential client `smartchat` (secret `smartchat-test-secret`) with the given
// redirect URI, PKCE required, client_credentials allowed; one resource server (the API
// audience) receiving RS256 JWT access tokens. Interactions finish without a person: the
// account is the authorization request's `login_hint` (default `alice`), its e-mail
// `<account>@example.test`, verified unless the account starts with `unverified`.
// `POST /test/sign` signs arbitrary claims with the provider's own key (expired or
// wrong-audience tokens for the negative tests). Keys are new at each start, their ids
// `test-rs256<kid_suffix>` and `test-es256<kid_suffix>` (a restart with another suffix is a
// key rotation). Prints `ready <issuer>` when listening.
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, redirectUri, audience, kidSuffix = ''] = process.argv.slice(2);
if (!port || !redirectUri || !audience) {
  console.error('usage: node provider.mjs <port> <redirect_uri> <api_audience>');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const rsa = await jose.generateKeyPair('RS256', { extractable: true });
const rsaJwk = { ...(await jose.exportJWK(rsa.privateKey)), kid: `test-rs256${kidSuffix}`, alg: 'RS256', use: 'sig' };
const ec = await jose.generateKeyPair('ES256', { extractable: true });
const ecJwk = { ...(await jose.exportJWK(ec.privateKey)), kid: `test-es256${kidSuffix}`, alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'smartchat',
    client_secret: 'smartchat-test-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'client_credentials'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [rsaJwk, ecJwk] },
  cookies: { keys: ['smartchat-test-cookie-key'] },
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'email', 'api'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== audience) throw new Error('unknown resource');
        return { scope: 'api', audience, accessTokenFormat: 'jwt', accessTokenTTL: 600, jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: !id.startsWith('unverified') };
      },
    };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.proxy = false;

// Non-interactive login and consent.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/test/sign') {
    const chunks = [];
    for await (const c of ctx.req) chunks.push(c);
    const { claims, typ } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    ctx.body = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: rsaJwk.kid, typ: typ ?? 'at+jwt' })
      .sign(rsa.privateKey);
    ctx.type = 'text/plain';
    return;
  }
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const accountId = typeof params.login_hint === 'string' && params.login_hint ? params.login_hint : 'alice';
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId } }, { mergeWithLastSubmission: false });
    return;
  }
  const accountId = details.session.accountId;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope('openid email');
  grant.addResourceScope(audience, 'api');
  const grantId = await grant.save();
  await provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
