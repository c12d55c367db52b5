-- Conversions recorded by trackers (SPEC §4).
CREATE TABLE conversions (
    id             uuid        PRIMARY KEY,
    created_at     timestamptz NOT NULL,
    promo_code     text        NOT NULL,
    promo_code_ref text        NOT NULL,
    offer_id       bigint      NOT NULL,
    affiliate_id   bigint      NOT NULL,
    goal_id        bigint      NOT NULL,
    status         text        NOT NULL CHECK (status IN ('approved', 'pending', 'declined')),
    amount         numeric     NOT NULL CHECK (amount >= 0),
    payout         numeric     NOT NULL,
    revenue        numeric     NOT NULL,
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    adv_order_id   text        CHECK (length(adv_order_id) <= 128),
    adv_param1     text,
    adv_param2     text,
    adv_param3     text,
    adv_param4     text,
    adv_param5     text,
    source         text        NOT NULL CHECK (source IN ('postback', 'js', 'img', 'iframe')),
    ip             inet,
    user_agent     text
);

-- Idempotency: one conversion per (offer, goal, adv_order_id).
CREATE UNIQUE INDEX conversions_order_key ON conversions (offer_id, goal_id, adv_order_id) WHERE adv_order_id IS NOT NULL;
-- Reports: newest first, by affiliate, by code (case-insensitive).
CREATE INDEX conversions_created ON conversions (created_at DESC, id DESC);
CREATE INDEX conversions_affiliate ON conversions (affiliate_id, created_at DESC, id DESC);
CREATE INDEX conversions_code ON conversions (upper(promo_code), created_at DESC, id DESC);
