CREATE TABLE "posts" (
    "id" UUID PRIMARY KEY NOT NULL,
    "title" TEXT NOT NULL,
    "rating" INTEGER NOT NULL,
    "status" TEXT NOT NULL CHECK ("status" IN ('Active', 'Inactive')),
    "body" TEXT,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL
);
CREATE TABLE "comments" (
    "id" UUID PRIMARY KEY NOT NULL,
    "content" TEXT,
    "post_id" UUID NOT NULL REFERENCES "posts" ("id") ON DELETE CASCADE,
    "created_at" TIMESTAMPTZ NOT NULL
);
CREATE INDEX "idx_comments_post_id" ON "comments" ("post_id");
CREATE TABLE "users" (
    "id" UUID PRIMARY KEY NOT NULL,
    "username" TEXT NOT NULL UNIQUE
);
CREATE TABLE "post_editors" (
    "id" UUID PRIMARY KEY NOT NULL,
    "post_id" UUID NOT NULL REFERENCES "posts" ("id") ON DELETE RESTRICT,
    "editor_id" UUID NOT NULL REFERENCES "users" ("id") ON DELETE RESTRICT
);
CREATE INDEX "idx_post_editors_post_id" ON "post_editors" ("post_id");
CREATE INDEX "idx_post_editors_editor_id" ON "post_editors" ("editor_id");
CREATE TABLE "profiles" (
    "id" UUID PRIMARY KEY NOT NULL,
    "user_id" UUID NOT NULL UNIQUE REFERENCES "users" ("id") ON DELETE CASCADE,
    "bio" TEXT,
    "avatar" BYTEA,
    "settings" JSONB NOT NULL,
    "extra" JSONB NOT NULL,
    "verified" BOOLEAN NOT NULL,
    "karma" BIGINT NOT NULL,
    "score" DOUBLE PRECISION NOT NULL,
    "level" SMALLINT NOT NULL,
    "ratio" REAL NOT NULL
);
