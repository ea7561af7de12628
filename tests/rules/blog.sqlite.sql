CREATE TABLE "posts" (
    "id" TEXT PRIMARY KEY NOT NULL,
    "title" TEXT NOT NULL,
    "rating" INTEGER NOT NULL,
    "status" TEXT NOT NULL CHECK ("status" IN ('Active', 'Inactive')),
    "body" TEXT,
    "created_at" TEXT NOT NULL,
    "updated_at" TEXT NOT NULL
) STRICT;
CREATE TABLE "users" (
    "id" TEXT PRIMARY KEY NOT NULL,
    "username" TEXT NOT NULL UNIQUE
) STRICT;
CREATE TABLE "post_editors" (
    "id" TEXT PRIMARY KEY NOT NULL,
    "post_id" TEXT NOT NULL REFERENCES "posts" ("id") ON DELETE RESTRICT,
    "editor_id" TEXT NOT NULL REFERENCES "users" ("id") ON DELETE RESTRICT
) STRICT;
CREATE UNIQUE INDEX "uq_post_editors_post_id_editor_id" ON "post_editors" ("post_id", "editor_id");
CREATE INDEX "idx_post_editors_editor_id" ON "post_editors" ("editor_id");
CREATE TABLE "profiles" (
    "id" TEXT PRIMARY KEY NOT NULL,
    "user_id" TEXT NOT NULL UNIQUE REFERENCES "users" ("id") ON DELETE CASCADE,
    "bio" TEXT,
    "avatar" BLOB,
    "settings" TEXT NOT NULL,
    "extra" TEXT NOT NULL,
    "verified" INTEGER NOT NULL,
    "karma" INTEGER NOT NULL,
    "score" REAL NOT NULL,
    "level" INTEGER NOT NULL,
    "ratio" REAL NOT NULL
) STRICT;
CREATE TABLE "reactions" (
    "id" INTEGER PRIMARY KEY NOT NULL,
    "post_id" TEXT NOT NULL REFERENCES "posts" ("id") ON DELETE CASCADE,
    "emoji" TEXT NOT NULL
) STRICT;
CREATE INDEX "idx_reactions_post_id" ON "reactions" ("post_id");
CREATE TABLE "comments" (
    "id" TEXT PRIMARY KEY NOT NULL,
    "content" TEXT,
    "post_id" TEXT NOT NULL REFERENCES "posts" ("id") ON DELETE CASCADE,
    "created_at" TEXT NOT NULL,
    "parent_id" TEXT REFERENCES "comments" ("id") ON DELETE CASCADE,
    "author_id" TEXT REFERENCES "users" ("id") ON DELETE SET NULL
) STRICT;
CREATE INDEX "idx_comments_post_id" ON "comments" ("post_id");
CREATE INDEX "idx_comments_parent_id" ON "comments" ("parent_id");
CREATE INDEX "idx_comments_author_id" ON "comments" ("author_id");
