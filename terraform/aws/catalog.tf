# The catalog: RDS PostgreSQL reachable only from the agents. Its master
# password is generated and stored by RDS in Secrets Manager
# (manage_master_user_password), so it never appears in Terraform state or
# in the agents' user data; agents read it at start (see
# templates/user-data.sh.tftpl).

resource "aws_db_subnet_group" "catalog" {
  name_prefix = "${var.name}-catalog-"
  description = "Floe catalog (${local.cluster})"
  subnet_ids  = var.subnet_ids
  tags        = local.tags
}

resource "aws_security_group" "catalog" {
  name_prefix = "${var.name}-catalog-"
  description = "Floe catalog: PostgreSQL from the agents only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-catalog" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "catalog_from_agents" {
  security_group_id            = aws_security_group.catalog.id
  description                  = "PostgreSQL from Floe agents"
  referenced_security_group_id = aws_security_group.agents.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_parameter_group" "catalog" {
  name_prefix = "${var.name}-catalog-"
  description = "Floe catalog (${local.cluster})"
  family      = "postgres${split(".", var.db_engine_version)[0]}"
  tags        = local.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Catalog statements take milliseconds; log the ones that do not.
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "catalog" {
  identifier     = "${var.name}-catalog"
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  db_name                       = var.db_name
  username                      = var.db_username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn

  db_subnet_group_name   = aws_db_subnet_group.catalog.name
  vpc_security_group_ids = [aws_security_group.catalog.id]
  parameter_group_name   = aws_db_parameter_group.catalog.name
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "03:00-03:30"
  maintenance_window        = "sun:04:00-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
  final_snapshot_identifier = var.db_skip_final_snapshot ? null : "${var.name}-catalog-final"

  auto_minor_version_upgrade      = true
  allow_major_version_upgrade     = false
  performance_insights_enabled    = true
  performance_insights_kms_key_id = var.kms_key_arn
  enabled_cloudwatch_logs_exports = ["postgresql"]

  tags = local.tags
}
