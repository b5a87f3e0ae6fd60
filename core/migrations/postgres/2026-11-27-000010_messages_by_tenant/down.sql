DROP INDEX messages_tenant;
