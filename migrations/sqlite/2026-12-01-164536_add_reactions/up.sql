CREATE TABLE "reactions" (
    "id" INTEGER PRIMARY KEY NOT NULL,
    "post_id" TEXT NOT NULL REFERENCES "posts" ("id") ON DELETE CASCADE,
    "emoji" TEXT NOT NULL
) STRICT;
CREATE INDEX "idx_reactions_post_id" ON "reactions" ("post_id");
