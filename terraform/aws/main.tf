# Floe on AWS: stateless agents in an Auto Scaling group behind an internal
# Network Load Balancer, segment objects in S3, the catalog in RDS
# PostgreSQL. Files: storage.tf (S3), catalog.tf (RDS), iam.tf (the agents'
# role), network.tf (security groups, load balancer), compute.tf (launch
# template, Auto Scaling group, scaling policy).

locals {
  cluster = coalesce(var.cluster_name, var.name)

  lb_subnet_ids = var.load_balancer_subnet_ids != null ? var.load_balancer_subnet_ids : var.subnet_ids

  ami_id = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.al2023[0].insecure_value

  tags = merge({
    "floe:cluster" = local.cluster
    "managed-by"   = "terraform"
  }, var.tags)

  # The object store URL the agents open (objstore's s3 scheme).
  bucket_url = "s3://${aws_s3_bucket.segments.id}?region=${aws_s3_bucket.segments.region}"

  # RDS keeps the generated master password here (manage_master_user_password).
  db_secret_arn = aws_db_instance.catalog.master_user_secret[0].secret_arn
}

data "aws_partition" "current" {}

# The public Amazon Linux 2023 AMI parameter; resolved at plan time, so an
# apply after AWS publishes a new AMI rolls the fleet through the instance
# refresh, whatever else it changes. Pin ami_id to control that.
data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}
