DROP INDEX "idx_comments_author_id";
DROP INDEX "idx_comments_parent_id";
ALTER TABLE "comments" DROP COLUMN "author_id";
ALTER TABLE "comments" DROP COLUMN "parent_id";
DROP INDEX "uq_post_editors_post_id_editor_id";
CREATE INDEX "idx_post_editors_post_id" ON "post_editors" ("post_id");
