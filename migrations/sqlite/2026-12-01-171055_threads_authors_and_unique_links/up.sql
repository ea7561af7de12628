DROP INDEX "idx_post_editors_post_id";
CREATE UNIQUE INDEX "uq_post_editors_post_id_editor_id" ON "post_editors" ("post_id", "editor_id");
ALTER TABLE "comments" ADD COLUMN "parent_id" TEXT REFERENCES "comments" ("id") ON DELETE CASCADE;
ALTER TABLE "comments" ADD COLUMN "author_id" TEXT REFERENCES "users" ("id") ON DELETE SET NULL;
CREATE INDEX "idx_comments_parent_id" ON "comments" ("parent_id");
CREATE INDEX "idx_comments_author_id" ON "comments" ("author_id");
