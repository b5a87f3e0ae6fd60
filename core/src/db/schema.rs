//! The one diesel schema both backends share. Only portable SQL types are used:
//! `Text`, `BigInt`, `Integer`, `Binary` (ciphertext, keyed hashes, digests) and `Bool`;
//! times are unix microseconds in `BigInt`.

diesel::table! {
    tenants (id) {
        id -> Text,
        handle -> Text,
        status -> Text,
        profile_ct -> Binary,
        created_at -> BigInt,
        terminated_at -> Nullable<BigInt>,
        purge_after -> Nullable<BigInt>,
        policy_overrides -> Nullable<Text>,
        provider_chain -> Nullable<Text>,
    }
}

diesel::table! {
    policy_versions (version) {
        version -> Text,
        policy -> Text,
        recorded_at -> BigInt,
    }
}

diesel::table! {
    registry_changes (id) {
        id -> Text,
        processor -> Text,
        body -> Text,
        announced_at -> BigInt,
        effective_at -> BigInt,
    }
}

diesel::table! {
    registry_notices (change_id, tenant_id) {
        change_id -> Text,
        tenant_id -> Text,
        notified_at -> BigInt,
    }
}

diesel::table! {
    registry_objections (change_id, tenant_id) {
        change_id -> Text,
        tenant_id -> Text,
        objected_at -> BigInt,
    }
}

diesel::table! {
    phone_numbers (phone_number_id) {
        phone_number_id -> Text,
        tenant_id -> Text,
        access_token_ct -> Binary,
        created_at -> BigInt,
        waba_id -> Nullable<Text>,
    }
}

diesel::table! {
    provider_keys (tenant_id, provider) {
        tenant_id -> Text,
        provider -> Text,
        key_ct -> Binary,
        updated_at -> BigInt,
    }
}

diesel::table! {
    members (id) {
        id -> Text,
        tenant_id -> Text,
        login_blind -> Binary,
        login_ct -> Binary,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    subjects (id) {
        id -> Text,
        tenant_id -> Text,
        wa_id_blind -> Nullable<Binary>,
        bsuid_blind -> Nullable<Binary>,
        phone_blind -> Nullable<Binary>,
        contact_ct -> Binary,
        objected -> Bool,
        opted_out -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    subject_keys (subject_id) {
        subject_id -> Text,
        tenant_id -> Text,
        wrapped_key -> Binary,
        created_at -> BigInt,
    }
}

diesel::table! {
    conversations (id) {
        id -> Text,
        tenant_id -> Text,
        subject_id -> Text,
        phone_number_id -> Text,
        mode -> Text,
        last_inbound_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        tenant_id -> Text,
        conversation_id -> Text,
        subject_id -> Text,
        direction -> Text,
        kind -> Text,
        status -> Text,
        wamid -> Nullable<Text>,
        body_ct -> Nullable<Binary>,
        author -> Text,
        error_code -> Nullable<Integer>,
        created_at -> BigInt,
        status_at -> BigInt,
        template_ct -> Nullable<Binary>,
    }
}

diesel::table! {
    dsr_requests (id) {
        id -> Text,
        tenant_id -> Text,
        subject_id -> Nullable<Text>,
        right_kind -> Text,
        channel -> Text,
        regime -> Text,
        status -> Text,
        received_at -> BigInt,
        due_at -> BigInt,
        extended_at -> Nullable<BigInt>,
        extension_reason -> Nullable<Text>,
        completed_at -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        record_count -> Nullable<BigInt>,
        details_ct -> Nullable<Binary>,
        open_key -> Nullable<Text>,
    }
}

diesel::table! {
    dsr_challenges (id) {
        id -> Text,
        tenant_id -> Text,
        right_kind -> Text,
        regime -> Text,
        number_blind -> Binary,
        code_digest -> Binary,
        attempts -> Integer,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        request_id -> Nullable<Text>,
        download_digest -> Nullable<Binary>,
        created_at -> BigInt,
    }
}

diesel::table! {
    legal_holds (id) {
        id -> Text,
        tenant_id -> Text,
        subject_id -> Nullable<Text>,
        reason -> Text,
        placed_at -> BigInt,
        released_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    booking_links (token) {
        token -> Text,
        tenant_id -> Text,
        conversation_id -> Text,
        message_id -> Text,
        url -> Text,
        created_at -> BigInt,
        clicked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    message_templates (tenant_id, name, language) {
        tenant_id -> Text,
        name -> Text,
        language -> Text,
        category -> Text,
        status -> Text,
        body -> Text,
        params -> Integer,
        source -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    leads (id) {
        id -> Text,
        tenant_id -> Text,
        subject_id -> Text,
        conversation_id -> Nullable<Text>,
        stage -> Text,
        source -> Text,
        details_ct -> Binary,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        queue -> Text,
        kind -> Text,
        tenant_id -> Nullable<Text>,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        run_at -> BigInt,
        locked_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        dedupe_key -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    follow_up_rules (id) {
        id -> Text,
        tenant_id -> Text,
        name -> Text,
        trigger_kind -> Text,
        trigger_stage -> Nullable<Text>,
        after_minutes -> BigInt,
        message_ct -> Binary,
        max_per_lead -> Integer,
        min_gap_minutes -> BigInt,
        respect_hours -> Bool,
        catch_up -> Bool,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        template_ct -> Nullable<Binary>,
    }
}

diesel::table! {
    follow_ups (id) {
        id -> Text,
        tenant_id -> Text,
        rule_id -> Text,
        lead_id -> Text,
        conversation_id -> Text,
        seq -> Integer,
        anchor_at -> BigInt,
        due_at -> BigInt,
        status -> Text,
        reason -> Nullable<Text>,
        message_id -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    search_feed (seq) {
        seq -> BigInt,
        tenant_id -> Text,
        op -> Text,
        ref_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    ledger_pending (id) {
        id -> BigInt,
        draft -> Binary,
        created_micros -> BigInt,
    }
}

diesel::table! {
    ledger_head (id) {
        id -> Integer,
        size -> BigInt,
        last_hash -> Binary,
        last_time_micros -> BigInt,
    }
}

diesel::table! {
    ledger_entries (seq) {
        seq -> BigInt,
        tenant_id -> Nullable<Binary>,
        kind -> Integer,
        time_micros -> BigInt,
        entry -> Binary,
        hash -> Binary,
    }
}

diesel::table! {
    ledger_tree (id) {
        id -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    ledger_checkpoints (size) {
        size -> BigInt,
        root -> Binary,
        note -> Text,
        created_micros -> BigInt,
    }
}

diesel::joinable!(phone_numbers -> tenants (tenant_id));
diesel::joinable!(members -> tenants (tenant_id));
diesel::joinable!(subjects -> tenants (tenant_id));
diesel::joinable!(subject_keys -> subjects (subject_id));
diesel::joinable!(conversations -> subjects (subject_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(leads -> subjects (subject_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    phone_numbers,
    members,
    subjects,
    subject_keys,
    conversations,
    messages,
    leads,
    jobs,
);

/// Tables of the key store, a database apart from the main one.
pub mod keystore {
    diesel::table! {
        keystore_meta (id) {
            id -> Integer,
            master_recipient -> Text,
            check_ct -> Binary,
            updated_at -> BigInt,
        }
    }

    diesel::table! {
        tenant_keys (tenant_id) {
            tenant_id -> Text,
            recipient -> Text,
            wrapped_identity -> Nullable<Binary>,
            created_at -> BigInt,
            shredded_at -> Nullable<BigInt>,
        }
    }

    diesel::table! {
        service_keys (name) {
            name -> Text,
            public_key -> Text,
            wrapped_secret -> Binary,
            created_at -> BigInt,
        }
    }
}
