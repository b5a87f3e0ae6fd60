//! Tables of the authentication layer (issue 8): portal sessions and OIDC login attempts.
//! Kept apart from `schema.rs` so the auth migration owns its own definitions; the types
//! follow the same portable rules (`Binary` digests, times in unix microseconds).

diesel::table! {
    /// One server-side portal session. `id_hash` is BLAKE3 of the 256-bit session secret
    /// held only by the browser's cookie.
    sessions (id_hash) {
        id_hash -> Binary,
        member_id -> Text,
        tenant_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    /// One OIDC authorization request in flight, deleted when its callback arrives (single
    /// use). `state_hash` and `binding_hash` are BLAKE3 digests of the `state` sent to the
    /// provider and of the browser-binding secret kept in a cookie.
    login_attempts (state_hash) {
        state_hash -> Binary,
        binding_hash -> Binary,
        tenant_hint -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}
