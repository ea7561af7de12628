DROP TABLE "profiles";
DROP TABLE "post_editors";
DROP TABLE "users";
DROP TABLE "comments";
DROP TABLE "posts";
