-- Chargeback and money settings (issue #6): per-org platform fee and auto top-up settings,
-- auto top-up attempts (one per threshold crossing), and the reference catalog of public list
-- prices. Keep in step with ../postgres.

-- Money settings of an org. No row = defaults: no platform fee (self-hosted: zero markup), no
-- auto top-up.
CREATE TABLE org_billing_settings (
    org_id                      TEXT PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    -- Added to each generation's provider cost as a separate `fee` posting, in basis points.
    platform_fee_bps            INTEGER NOT NULL DEFAULT 0,
    auto_topup_enabled          BOOLEAN NOT NULL DEFAULT FALSE,
    auto_topup_threshold_nanos  INTEGER NOT NULL DEFAULT 0,
    auto_topup_amount_nanos     INTEGER NOT NULL DEFAULT 0,
    stripe_customer_id          TEXT NOT NULL DEFAULT '',
    stripe_payment_method_id    TEXT NOT NULL DEFAULT '',
    updated_at                  INTEGER NOT NULL
);

-- Off-session PaymentIntents charged when credits fell below the threshold. `crossing` counts
-- an org's attempts: a new one starts only after the previous succeeded, so replicas racing on
-- the same crossing insert the same (org_id, crossing) and only one charges the card.
CREATE TABLE auto_topups (
    id                 TEXT PRIMARY KEY,
    org_id             TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    crossing           INTEGER NOT NULL,
    amount_nanos       INTEGER NOT NULL,
    balance_nanos      INTEGER NOT NULL,
    payment_intent_id  TEXT,
    -- pending | succeeded | failed | dismissed
    status             TEXT NOT NULL,
    error              TEXT NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    completed_at       INTEGER,
    UNIQUE (org_id, crossing)
);

-- Reference catalog: public list prices (nano-USD per million tokens) of widely used models,
-- with the date they were read and where. org_id '' is the seeded list; an org's own row with
-- the same id overrides it (operators' edits and custom models). Importing a catalog entry
-- creates an ordinary model + endpoint in the org, priced from here.
CREATE TABLE catalog_models (
    org_id                   TEXT NOT NULL DEFAULT '',
    id                       TEXT NOT NULL,
    name                     TEXT NOT NULL,
    vendor                   TEXT NOT NULL,
    -- Whose price list: the vendor itself or an OpenAI-compatible host serving the model.
    host                     TEXT NOT NULL,
    upstream_model           TEXT NOT NULL,
    context_length           INTEGER NOT NULL,
    max_output_tokens        INTEGER NOT NULL,
    price_input              INTEGER NOT NULL,
    price_output             INTEGER NOT NULL,
    price_cache_read         INTEGER NOT NULL DEFAULT 0,
    price_cache_write_5m     INTEGER NOT NULL DEFAULT 0,
    price_cache_write_1h     INTEGER NOT NULL DEFAULT 0,
    -- Prompts above this many input tokens use the lc_* prices; 0 = no tier.
    long_context_threshold   INTEGER NOT NULL DEFAULT 0,
    lc_price_input           INTEGER NOT NULL DEFAULT 0,
    lc_price_output          INTEGER NOT NULL DEFAULT 0,
    lc_price_cache_read      INTEGER NOT NULL DEFAULT 0,
    lc_price_cache_write_5m  INTEGER NOT NULL DEFAULT 0,
    lc_price_cache_write_1h  INTEGER NOT NULL DEFAULT 0,
    -- YYYY-MM-DD the list price was read.
    as_of                    TEXT NOT NULL,
    source                   TEXT NOT NULL DEFAULT '',
    updated_at               INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, id)
);

-- Public list prices as of 2025-08-01 (USD per million tokens × 10^9). Anthropic cache writes:
-- 5 min = 1.25 × input, 1 h = 2 × input. Gemini 2.5 Pro and Claude Sonnet 4 (1M context) charge
-- long-context prices above 200k prompt tokens. Meta models are priced at the named host.
INSERT INTO catalog_models (id, name, vendor, host, upstream_model, context_length, max_output_tokens,
    price_input, price_output, price_cache_read, price_cache_write_5m, price_cache_write_1h,
    long_context_threshold, lc_price_input, lc_price_output, lc_price_cache_read, lc_price_cache_write_5m,
    lc_price_cache_write_1h, as_of, source) VALUES
    ('openai/gpt-5', 'GPT-5', 'openai', 'openai', 'gpt-5', 400000, 128000, 1250000000, 10000000000, 125000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/gpt-5-mini', 'GPT-5 mini', 'openai', 'openai', 'gpt-5-mini', 400000, 128000, 250000000, 2000000000, 25000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/gpt-5-nano', 'GPT-5 nano', 'openai', 'openai', 'gpt-5-nano', 400000, 128000, 50000000, 400000000, 5000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/gpt-4.1', 'GPT-4.1', 'openai', 'openai', 'gpt-4.1', 1047576, 32768, 2000000000, 8000000000, 500000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/gpt-4.1-mini', 'GPT-4.1 mini', 'openai', 'openai', 'gpt-4.1-mini', 1047576, 32768, 400000000, 1600000000, 100000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/gpt-4.1-nano', 'GPT-4.1 nano', 'openai', 'openai', 'gpt-4.1-nano', 1047576, 32768, 100000000, 400000000, 25000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/gpt-4o', 'GPT-4o', 'openai', 'openai', 'gpt-4o', 128000, 16384, 2500000000, 10000000000, 1250000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/gpt-4o-mini', 'GPT-4o mini', 'openai', 'openai', 'gpt-4o-mini', 128000, 16384, 150000000, 600000000, 75000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/o3', 'o3', 'openai', 'openai', 'o3', 200000, 100000, 2000000000, 8000000000, 500000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/o3-mini', 'o3-mini', 'openai', 'openai', 'o3-mini', 200000, 100000, 1100000000, 4400000000, 550000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/o4-mini', 'o4-mini', 'openai', 'openai', 'o4-mini', 200000, 100000, 1100000000, 4400000000, 275000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/text-embedding-3-small', 'text-embedding-3-small', 'openai', 'openai', 'text-embedding-3-small', 8191, 1, 20000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('openai/text-embedding-3-large', 'text-embedding-3-large', 'openai', 'openai', 'text-embedding-3-large', 8191, 1, 130000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://openai.com/api/pricing'),
    ('anthropic/claude-opus-4.1', 'Claude Opus 4.1', 'anthropic', 'anthropic', 'claude-opus-4-1', 200000, 32000, 15000000000, 75000000000, 1500000000, 18750000000, 30000000000, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://www.anthropic.com/pricing#api'),
    ('anthropic/claude-opus-4', 'Claude Opus 4', 'anthropic', 'anthropic', 'claude-opus-4-0', 200000, 32000, 15000000000, 75000000000, 1500000000, 18750000000, 30000000000, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://www.anthropic.com/pricing#api'),
    ('anthropic/claude-sonnet-4', 'Claude Sonnet 4', 'anthropic', 'anthropic', 'claude-sonnet-4-0', 1000000, 64000, 3000000000, 15000000000, 300000000, 3750000000, 6000000000, 200000, 6000000000, 22500000000, 600000000, 7500000000, 12000000000, '2025-08-01', 'https://www.anthropic.com/pricing#api'),
    ('anthropic/claude-3.7-sonnet', 'Claude 3.7 Sonnet', 'anthropic', 'anthropic', 'claude-3-7-sonnet-latest', 200000, 64000, 3000000000, 15000000000, 300000000, 3750000000, 6000000000, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://www.anthropic.com/pricing#api'),
    ('anthropic/claude-3.5-haiku', 'Claude 3.5 Haiku', 'anthropic', 'anthropic', 'claude-3-5-haiku-latest', 200000, 8192, 800000000, 4000000000, 80000000, 1000000000, 1600000000, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://www.anthropic.com/pricing#api'),
    ('anthropic/claude-3-haiku', 'Claude 3 Haiku', 'anthropic', 'anthropic', 'claude-3-haiku-20240307', 200000, 4096, 250000000, 1250000000, 30000000, 300000000, 500000000, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://www.anthropic.com/pricing#api'),
    ('google/gemini-2.5-pro', 'Gemini 2.5 Pro', 'google', 'gemini', 'gemini-2.5-pro', 1048576, 65536, 1250000000, 10000000000, 310000000, 0, 0, 200000, 2500000000, 15000000000, 625000000, 0, 0, '2025-08-01', 'https://ai.google.dev/gemini-api/docs/pricing'),
    ('google/gemini-2.5-flash', 'Gemini 2.5 Flash', 'google', 'gemini', 'gemini-2.5-flash', 1048576, 65536, 300000000, 2500000000, 75000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://ai.google.dev/gemini-api/docs/pricing'),
    ('google/gemini-2.5-flash-lite', 'Gemini 2.5 Flash-Lite', 'google', 'gemini', 'gemini-2.5-flash-lite', 1048576, 65536, 100000000, 400000000, 25000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://ai.google.dev/gemini-api/docs/pricing'),
    ('google/gemini-2.0-flash', 'Gemini 2.0 Flash', 'google', 'gemini', 'gemini-2.0-flash', 1048576, 8192, 100000000, 400000000, 25000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://ai.google.dev/gemini-api/docs/pricing'),
    ('google/gemini-2.0-flash-lite', 'Gemini 2.0 Flash-Lite', 'google', 'gemini', 'gemini-2.0-flash-lite', 1048576, 8192, 75000000, 300000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://ai.google.dev/gemini-api/docs/pricing'),
    ('meta-llama/llama-4-maverick', 'Llama 4 Maverick (Groq)', 'meta', 'groq', 'meta-llama/llama-4-maverick-17b-128e-instruct', 131072, 8192, 200000000, 600000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://groq.com/pricing'),
    ('meta-llama/llama-4-scout', 'Llama 4 Scout (Groq)', 'meta', 'groq', 'meta-llama/llama-4-scout-17b-16e-instruct', 131072, 8192, 110000000, 340000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://groq.com/pricing'),
    ('meta-llama/llama-3.3-70b-instruct', 'Llama 3.3 70B Instruct (Groq)', 'meta', 'groq', 'llama-3.3-70b-versatile', 131072, 32768, 590000000, 790000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://groq.com/pricing'),
    ('meta-llama/llama-3.1-8b-instruct', 'Llama 3.1 8B Instruct (Groq)', 'meta', 'groq', 'llama-3.1-8b-instant', 131072, 131072, 50000000, 80000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://groq.com/pricing'),
    ('meta-llama/llama-3.1-405b-instruct', 'Llama 3.1 405B Instruct (Together)', 'meta', 'together', 'meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo', 130815, 4096, 3500000000, 3500000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://www.together.ai/pricing'),
    ('mistralai/mistral-large', 'Mistral Large 24.11', 'mistral', 'mistral', 'mistral-large-latest', 131072, 131072, 2000000000, 6000000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://mistral.ai/pricing#api-pricing'),
    ('mistralai/mistral-medium-3', 'Mistral Medium 3', 'mistral', 'mistral', 'mistral-medium-latest', 131072, 131072, 400000000, 2000000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://mistral.ai/pricing#api-pricing'),
    ('mistralai/mistral-small-3.1', 'Mistral Small 3.1', 'mistral', 'mistral', 'mistral-small-latest', 131072, 131072, 100000000, 300000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://mistral.ai/pricing#api-pricing'),
    ('mistralai/codestral', 'Codestral', 'mistral', 'mistral', 'codestral-latest', 256000, 256000, 300000000, 900000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://mistral.ai/pricing#api-pricing'),
    ('mistralai/ministral-8b', 'Ministral 8B', 'mistral', 'mistral', 'ministral-8b-latest', 131072, 131072, 100000000, 100000000, 0, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://mistral.ai/pricing#api-pricing'),
    ('deepseek/deepseek-chat', 'DeepSeek V3 (deepseek-chat)', 'deepseek', 'deepseek', 'deepseek-chat', 65536, 8192, 270000000, 1100000000, 70000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://api-docs.deepseek.com/quick_start/pricing'),
    ('deepseek/deepseek-reasoner', 'DeepSeek R1 (deepseek-reasoner)', 'deepseek', 'deepseek', 'deepseek-reasoner', 65536, 65536, 550000000, 2190000000, 140000000, 0, 0, 0, 0, 0, 0, 0, 0, '2025-08-01', 'https://api-docs.deepseek.com/quick_start/pricing');
