# The agents: a launch template whose user data runs the Floe container, an
# Auto Scaling group spread over the subnets' zones, and a CPU target
# tracking policy. Changing the image, the AMI or any agent setting changes
# the launch template, which rolls the fleet through an instance refresh:
# one agent at a time up to ten agents, a tenth of them at a time beyond
# (new agents first, then the old ones drain: SIGTERM flushes and commits
# their WAL).

resource "aws_launch_template" "agent" {
  name_prefix            = "${var.name}-agent-"
  description            = "Floe agent (${local.cluster})"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  update_default_version = true
  vpc_security_group_ids = [aws_security_group.agents.id]

  iam_instance_profile {
    arn = aws_iam_instance_profile.agent.arn
  }

  # IMDSv2 only. Hop limit 1 is enough: the container shares the host's
  # network namespace.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_size_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  user_data = base64encode(templatefile("${path.module}/templates/user-data.sh.tftpl", {
    image              = var.image
    bucket_url         = local.bucket_url
    cluster            = local.cluster
    kafka_port         = var.kafka_port
    admin_port         = var.admin_port
    flush_interval     = var.flush_interval
    flush_bytes        = var.flush_bytes
    auto_create_topics = var.auto_create_topics
    default_partitions = var.default_partitions
    log_level          = var.log_level
    db_secret_arn      = local.db_secret_arn
    db_host            = aws_db_instance.catalog.address
    db_port            = aws_db_instance.catalog.port
    db_name            = var.db_name
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-agent" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${var.name}-agent" })
  }

  tags = local.tags
}

data "aws_caller_identity" "current" {}

# The Auto Scaling group creates the agents' root volumes as its
# service-linked role, which a customer managed key does not let in by
# default: without this grant every launch fails (Client.InternalError).
resource "aws_kms_grant" "autoscaling" {
  count             = var.kms_key_arn == null ? 0 : 1
  name              = "${var.name}-autoscaling-ebs"
  key_id            = var.kms_key_arn
  grantee_principal = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
  operations = [
    "Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo",
    "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "DescribeKey",
    # EC2 creates a grant of its own for each volume it attaches.
    "CreateGrant",
  ]
}

resource "aws_autoscaling_group" "agents" {
  name_prefix         = "${var.name}-agents-"
  min_size            = var.min_size
  max_size            = var.max_size
  vpc_zone_identifier = var.subnet_ids
  target_group_arns   = [aws_lb_target_group.kafka.arn]

  health_check_type         = "ELB"
  health_check_grace_period = 180
  default_instance_warmup   = 120
  enabled_metrics           = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupTotalInstances"]

  launch_template {
    id      = aws_launch_template.agent.id
    version = aws_launch_template.agent.latest_version
  }

  # Launch the replacement before terminating the old agent, so capacity
  # never drops during an upgrade, and replace few agents at a time: the
  # group may exceed its desired capacity by 10%, and by at least one
  # instance, so a fleet of up to ten agents rolls one agent at a time and a
  # larger one about a tenth at a time. The maximum sets the batch: 200
  # replaced every agent at once (every partition's leader and every group
  # coordinator moving together, a bad release on every agent before the
  # first had warmed up).
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 110
      instance_warmup        = 120
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = "${var.name}-agent" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }

  lifecycle {
    # The scaling policy owns the desired capacity.
    ignore_changes = [desired_capacity]
  }

  # Launches need the key grant first.
  depends_on = [aws_kms_grant.autoscaling]
}

resource "aws_autoscaling_policy" "cpu" {
  name                   = "${var.name}-cpu-target"
  autoscaling_group_name = aws_autoscaling_group.agents.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.cpu_target_percent
  }
}
