DROP TABLE "reactions";
